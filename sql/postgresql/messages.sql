-- Messages: bulk upsert that skips unchanged rows, ordered read, delete per conversation.

-- name: upsert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)
-- Insert messages, or update those whose stored fields differ: one statement per batch.
-- Each parameter is the list of that column's values (bound as an array and unnested);
-- each message id occurs once (the binding keeps the last of repeated ids, and ON
-- CONFLICT cannot touch a row twice in one statement).
-- A message id belongs to one conversation for good. A message stored under another
-- conversation is touched but keeps its values (the CASEs), so that RETURNING lists it
-- with its owner and the binding refuses the whole write: under READ COMMITTED the DO
-- UPDATE sees the row as a concurrent writer committed it while this statement waited
-- for it, which a check in a statement of its own would cost a round trip to learn.
-- It returns every message it inserted or touched, with the conversation that message
-- is stored under (the binding counts the changed ones and refuses foreign ones).
-- Rows are written, and so locked, in message id order: concurrent writers queue
-- instead of deadlocking. (noqa RF02: the linter reads the collation name "C" as a
-- column.)
INSERT INTO messages AS m (
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
    u.message_id,
    u.conversation_id,
    u.provider_message_id,
    u.role,
    u.text,
    u.timestamp,
    u.content_hash,
    u.provider_meta,
    u.version
FROM
    unnest(
        cast(:message_id AS TEXT[]),
        cast(:conversation_id AS TEXT[]),
        cast(:provider_message_id AS TEXT[]),
        cast(:role AS TEXT[]),
        cast(:text AS TEXT[]),
        cast(:timestamp AS TEXT[]),
        cast(:content_hash AS TEXT[]),
        cast(:provider_meta AS JSONB[]),
        cast(:version AS BIGINT[])
    )
        AS u (
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
-- A row stored already with these values is left out before the upsert: ON CONFLICT
-- would lock it (a WAL record each), and re-ingesting unchanged bundles is the common
-- case. A row a concurrent writer changes meanwhile is the same race either way: the
-- statement that loses it runs as if it came first.
WHERE
    NOT EXISTS (
        SELECT 1
        FROM messages AS stored
        WHERE
            stored.message_id = u.message_id
            AND stored.conversation_id = u.conversation_id
            AND (
                stored.role,
                stored.text,
                stored.timestamp,
                stored.content_hash,
                stored.provider_meta
            ) IS NOT DISTINCT FROM (
                u.role, u.text, u.timestamp, u.content_hash, u.provider_meta
            )
    )
ORDER BY u.message_id COLLATE "C"  -- noqa: RF02
ON CONFLICT (message_id) DO UPDATE
    SET
        role = CASE
            WHEN m.conversation_id = excluded.conversation_id THEN excluded.role ELSE m.role
        END,
        text = CASE
            WHEN m.conversation_id = excluded.conversation_id THEN excluded.text ELSE m.text
        END,
        timestamp = CASE
            WHEN m.conversation_id = excluded.conversation_id
                THEN excluded.timestamp
            ELSE m.timestamp
        END,
        content_hash = CASE
            WHEN m.conversation_id = excluded.conversation_id
                THEN excluded.content_hash
            ELSE m.content_hash
        END,
        provider_meta = CASE
            WHEN m.conversation_id = excluded.conversation_id
                THEN excluded.provider_meta
            ELSE m.provider_meta
        END
    WHERE (
        m.conversation_id <> excluded.conversation_id
        OR (
            m.role, m.text, m.timestamp, m.content_hash, m.provider_meta
        ) IS DISTINCT FROM (
            excluded.role,
            excluded.text,
            excluded.timestamp,
            excluded.content_hash,
            excluded.provider_meta
        )
    )
RETURNING m.message_id, m.conversation_id;

-- name: get_messages(conversation_id)
-- The messages of one conversation by timestamp (NULL first), then message_id, in byte
-- order as on SQLite.
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
ORDER BY timestamp COLLATE "C" ASC NULLS FIRST, message_id COLLATE "C" ASC;

-- name: delete_conversation_messages(conversation_id)!
-- Delete the messages of one conversation (before the conversation row itself).
DELETE FROM messages
WHERE conversation_id = :conversation_id;

-- name: list_messages_in_id_range(after_id, last_id)
-- The messages of every conversation whose id is after after_id and at most last_id (one
-- page of list_conversations_by_id), in conversation_id order (code points), then as
-- get_messages orders them: one query per page where export, copy and verify would
-- otherwise run one per conversation.
-- The page's ids come from conversations (COLLATE "C" cannot use the index on
-- messages.conversation_id), and its messages through that index.
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
WHERE
    m.conversation_id IN (
        SELECT c.conversation_id
        FROM conversations AS c
        WHERE
            c.conversation_id COLLATE "C" > cast(:after_id AS TEXT)  -- noqa: RF02, RF03
            AND c.conversation_id COLLATE "C" <= cast(:last_id AS TEXT)  -- noqa: RF02, RF03
    )
ORDER BY
    m.conversation_id COLLATE "C" ASC,  -- noqa: RF02, RF03
    m.timestamp COLLATE "C" ASC NULLS FIRST,  -- noqa: RF02, RF03
    m.message_id COLLATE "C" ASC;  -- noqa: RF02, RF03
