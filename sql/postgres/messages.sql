-- Messages: bulk upsert that skips unchanged rows, ordered read, delete per conversation.

-- name: upsert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)!
-- Insert messages, or update those whose stored fields differ: one statement per batch.
-- Each parameter is the list of that column's values (bound as an array and unnested).
-- A message id listed twice keeps its last values (ON CONFLICT cannot touch a row twice
-- in one statement): the anti-join drops every row that a later row of the same id
-- replaces, without sorting the batch. The row count is the number of messages inserted or changed.
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
    ) WITH ORDINALITY
        AS u (
            message_id,
            conversation_id,
            provider_message_id,
            role,
            text,
            timestamp,
            content_hash,
            provider_meta,
            version,
            position
        )
WHERE
    NOT EXISTS (
        SELECT 1
        FROM
            unnest(cast(:message_id AS TEXT[])) WITH ORDINALITY
                AS later (
                    message_id, position
                )
        WHERE later.message_id = u.message_id AND later.position > u.position
    )
ON CONFLICT (message_id) DO UPDATE SET
    role = excluded.role,
    text = excluded.text,
    timestamp = excluded.timestamp,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    m.role, m.text, m.timestamp, m.content_hash, m.provider_meta
) IS DISTINCT FROM (
    excluded.role,
    excluded.text,
    excluded.timestamp,
    excluded.content_hash,
    excluded.provider_meta
);

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
