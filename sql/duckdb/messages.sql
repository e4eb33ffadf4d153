-- Messages: set-based upsert that skips unchanged rows, ordered read, delete per
-- conversation.
--
-- A batch is written with statements whose parameters are lists of column values (never
-- executemany: DuckDB runs a few hundred single-row upserts a second). A small batch is
-- one upsert_messages. For a large one DuckDB's ON CONFLICT costs tens of microseconds a
-- row, growing with the table, and so does any join that carries the message texts; so
-- it is classify_messages (ids only: which are new, which stored), insert_messages (a
-- plain insert of the new ones) and, only when some were stored, update_changed_messages.
-- Both ways give the same result.
-- There is no foreign key (see the baseline migration): a message whose conversation does
-- not exist fails the whole statement with "foreign key violation: ...".

-- name: upsert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)!
-- Insert a batch of messages, or update those whose stored fields differ. The row count
-- is the number of messages inserted or changed. When an id occurs twice in the batch the
-- last occurrence wins, as if the rows were upserted one after the other.
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
        unnest(:version) AS version,
        generate_subscripts(:message_id, 1) AS position
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
QUALIFY
    row_number() OVER (PARTITION BY batch.message_id ORDER BY batch.position DESC) = 1
ON CONFLICT (message_id) DO UPDATE SET
    role = excluded.role,
    text = excluded.text,
    timestamp = excluded.timestamp,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    messages.role IS DISTINCT FROM excluded.role
    OR messages.text IS DISTINCT FROM excluded.text
    OR messages.timestamp IS DISTINCT FROM excluded.timestamp
    OR messages.content_hash IS DISTINCT FROM excluded.content_hash
    OR messages.provider_meta IS DISTINCT FROM excluded.provider_meta
);

-- name: classify_messages(message_id, conversation_id)
-- The first step of a large batch: for the last occurrence of each message id, its
-- position in the batch (1-based) and whether the id is stored already. Reads only the
-- ids, so the joins never carry message texts. Fails with "foreign key violation: ..."
-- when a message's conversation does not exist.
SELECT
    batch.position,
    stored.message_id IS NOT NULL AS stored
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
QUALIFY
    row_number() OVER (PARTITION BY batch.message_id ORDER BY batch.position DESC) = 1
ORDER BY batch.position;

-- name: insert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)!
-- The second step: insert the batch's new messages, as classify_messages picked them
-- (each id once, none stored yet, conversations checked): a plain insert, the fastest
-- way into DuckDB.
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

-- name: update_changed_messages(message_id, role, text, timestamp, content_hash, provider_meta)!
-- The third step, run only when classify_messages found stored ids: update those of them
-- whose role, text, timestamp, content_hash or provider_meta differ (each id once); the
-- row count is the number changed. It takes only the columns an update may change:
-- provider ids, conversation and version never change, as in upsert_messages.
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
        unnest(:role) AS role,
        unnest(:text) AS text,
        unnest(:timestamp) AS timestamp,
        unnest(:content_hash) AS content_hash,
        unnest(:provider_meta) AS provider_meta
) AS batch
WHERE
    messages.message_id = batch.message_id
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
