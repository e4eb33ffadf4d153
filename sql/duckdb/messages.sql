-- Messages: set-based upsert that skips unchanged rows, ordered read, delete per
-- conversation.
--
-- A batch is written with statements whose parameters are lists of column values (never
-- executemany: DuckDB runs a few hundred single-row upserts a second). A small batch is
-- one upsert_messages. For a large one DuckDB's ON CONFLICT costs tens of microseconds a
-- row, growing with the table, and so does any join that carries the message texts; so
-- it is classify_messages (ids only: which are new, which stored), insert_messages (a
-- plain insert of the new ones) and, only when some were stored, update_changed_messages
-- (from DuckDBBackend.split_upsert_rows messages on; the binding runs the three, see
-- polylogue/storage/backends/writes.py). Both ways give the same result. Each message id occurs once in a batch: the binding
-- keeps the last of repeated ids.
-- A message id belongs to one conversation for good: no statement here changes a message
-- stored under another conversation; upsert_messages (RETURNING) and classify_messages
-- (before the others write) report such messages and the binding refuses the whole
-- write.
-- There is no foreign key (see the baseline migration): a message whose conversation does
-- not exist fails the whole statement with "foreign key violation: ...".

-- name: upsert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)
-- Insert a batch of messages, or update those whose stored fields differ. A message
-- stored under another conversation is touched but keeps its values (the CASEs), so that
-- it is returned with its owner. Returns every message inserted or touched, with the
-- conversation that message is stored under (the binding counts the changed ones and
-- refuses foreign ones): one statement where a check of its own would cost another (a
-- DuckDB statement costs milliseconds; measured: 9-14% of a one-bundle transaction).
INSERT INTO messages (
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
)
SELECT
    batch.message_id,
    batch.conversation_id,
    batch.provider_message_id,
    batch.role,
    batch.text,
    batch.timestamp,
    batch.content_hash,
    batch.provider_meta,
    batch.version
FROM (
    SELECT
        unnest(:message_id) AS message_id,
        unnest(:conversation_id) AS conversation_id,
        unnest(:provider_message_id) AS provider_message_id,
        unnest(:role) AS role,
        unnest(:text) AS text,
        unnest(:timestamp) AS timestamp,
        unnest(:content_hash) AS content_hash,
        unnest(:provider_meta) AS provider_meta,
        unnest(:version) AS version
) AS batch
WHERE
    coalesce((
        SELECT
            error(format(
                'foreign key violation: message {} refers to conversation {}, which does not exist',
                orphan.message_id,
                orphan.conversation_id
            ))
        FROM (
            SELECT
                unnest(:message_id) AS message_id,
                unnest(:conversation_id) AS conversation_id
        ) AS orphan
        WHERE
            NOT EXISTS (
                SELECT 1 FROM conversations AS c
                WHERE c.conversation_id = orphan.conversation_id
            )
        ORDER BY orphan.message_id
        LIMIT 1
    ), TRUE)
ON CONFLICT (message_id) DO UPDATE
    SET
        role = CASE
            WHEN messages.conversation_id = excluded.conversation_id
                THEN excluded.role
            ELSE messages.role
        END,
        text = CASE
            WHEN messages.conversation_id = excluded.conversation_id
                THEN excluded.text
            ELSE messages.text
        END,
        timestamp = CASE
            WHEN messages.conversation_id = excluded.conversation_id
                THEN excluded.timestamp
            ELSE messages.timestamp
        END,
        content_hash = CASE
            WHEN messages.conversation_id = excluded.conversation_id
                THEN excluded.content_hash
            ELSE messages.content_hash
        END,
        provider_meta = CASE
            WHEN messages.conversation_id = excluded.conversation_id
                THEN excluded.provider_meta
            ELSE messages.provider_meta
        END
    WHERE (
        messages.conversation_id <> excluded.conversation_id
        OR messages.role IS DISTINCT FROM excluded.role
        OR messages.text IS DISTINCT FROM excluded.text
        OR messages.timestamp IS DISTINCT FROM excluded.timestamp
        OR messages.content_hash IS DISTINCT FROM excluded.content_hash
        OR messages.provider_meta IS DISTINCT FROM excluded.provider_meta
    )
RETURNING messages.message_id, messages.conversation_id;

-- name: classify_messages(message_id, conversation_id)
-- The first step of a large batch: for each message, its position in the batch (1-based),
-- whether the id is stored already and, if so, under which conversation (owner). Reads
-- only the ids, so the joins never carry message texts. Fails with "foreign key
-- violation: ..." when a message's conversation does not exist.
SELECT
    batch.position,
    stored.message_id IS NOT NULL AS stored,
    stored.conversation_id AS owner
FROM (
    SELECT
        unnest(:message_id) AS message_id,
        unnest(:conversation_id) AS conversation_id,
        generate_subscripts(:message_id, 1) AS position
) AS batch
LEFT JOIN messages AS stored ON batch.message_id = stored.message_id
WHERE
    coalesce((
        SELECT
            error(format(
                'foreign key violation: message {} refers to conversation {}, which does not exist',
                orphan.message_id,
                orphan.conversation_id
            ))
        FROM (
            SELECT
                unnest(:message_id) AS message_id,
                unnest(:conversation_id) AS conversation_id
        ) AS orphan
        WHERE
            NOT EXISTS (
                SELECT 1 FROM conversations AS c
                WHERE c.conversation_id = orphan.conversation_id
            )
        ORDER BY orphan.message_id
        LIMIT 1
    ), TRUE)
ORDER BY batch.position;

-- name: insert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)!
-- The second step: insert the batch's new messages, as classify_messages picked them
-- (none stored yet, conversations checked): a plain insert, the fastest way into DuckDB.
INSERT INTO messages (
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
)
SELECT
    unnest(:message_id) AS message_id,
    unnest(:conversation_id) AS conversation_id,
    unnest(:provider_message_id) AS provider_message_id,
    unnest(:role) AS role,
    unnest(:text) AS text,
    unnest(:timestamp) AS timestamp,
    unnest(:content_hash) AS content_hash,
    unnest(:provider_meta) AS provider_meta,
    unnest(:version) AS version;

-- name: update_changed_messages(message_id, conversation_id, role, text, timestamp, content_hash, provider_meta)!
-- The third step, run only when classify_messages found stored ids: update those of them
-- whose role, text, timestamp, content_hash or provider_meta differ; the row count is the
-- number changed. It takes only the columns an update may change, and the conversation:
-- provider ids, conversation and version never change, as in upsert_messages, and a
-- message of another conversation is left alone.
UPDATE messages
SET
    role = batch.role,
    text = batch.text,
    timestamp = batch.timestamp,
    content_hash = batch.content_hash,
    provider_meta = batch.provider_meta
FROM (
    SELECT
        unnest(:message_id) AS message_id,
        unnest(:conversation_id) AS conversation_id,
        unnest(:role) AS role,
        unnest(:text) AS text,
        unnest(:timestamp) AS timestamp,
        unnest(:content_hash) AS content_hash,
        unnest(:provider_meta) AS provider_meta
) AS batch
WHERE
    messages.message_id = batch.message_id
    AND messages.conversation_id = batch.conversation_id
    AND (
        messages.role IS DISTINCT FROM batch.role
        OR messages.text IS DISTINCT FROM batch.text
        OR messages.timestamp IS DISTINCT FROM batch.timestamp
        OR messages.content_hash IS DISTINCT FROM batch.content_hash
        OR messages.provider_meta IS DISTINCT FROM batch.provider_meta
    );

-- name: get_messages(conversation_id)
-- The messages of one conversation by timestamp (NULL first, as SQLite sorts them; DuckDB
-- would put them last), then message_id by code point.
SELECT
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
FROM messages
WHERE conversation_id = :conversation_id
ORDER BY timestamp ASC NULLS FIRST, message_id ASC;

-- name: delete_conversation_messages(conversation_id)!
-- Delete the messages of one conversation (before the conversation row itself).
DELETE FROM messages
WHERE conversation_id = :conversation_id;

-- name: list_messages_in_id_range(after_id, last_id)
-- The messages of every conversation whose id is after after_id and at most last_id (one
-- page of list_conversations_by_id), in conversation_id order (code points), then as
-- get_messages orders them: one query per page where export, copy and verify would
-- otherwise run one per conversation.
SELECT
    m.message_id,
    m.conversation_id,
    m.provider_message_id,
    m.role,
    m.text,
    m.timestamp,
    m.content_hash,
    m.provider_meta,
    m.version
FROM messages AS m
WHERE m.conversation_id > :after_id AND m.conversation_id <= :last_id
ORDER BY m.conversation_id ASC, m.timestamp ASC NULLS FIRST, m.message_id ASC;
