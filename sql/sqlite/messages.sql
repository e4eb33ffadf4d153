-- Messages: bulk upsert that skips unchanged rows, ordered read, delete per conversation.

-- name: upsert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)*!
-- Insert messages, or update those whose stored fields differ; run once per batch.
-- The summed row count is the number of messages inserted or changed.
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
VALUES (
    :message_id,
    :conversation_id,
    :provider_message_id,
    :role,
    :text,
    :timestamp,
    :content_hash,
    :provider_meta,
    :version
)
ON CONFLICT (message_id) DO UPDATE SET
    role = excluded.role,
    text = excluded.text,
    timestamp = excluded.timestamp,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    messages.role IS NOT excluded.role
    OR messages.text IS NOT excluded.text
    OR messages.timestamp IS NOT excluded.timestamp
    OR messages.content_hash IS NOT excluded.content_hash
    OR messages.provider_meta IS NOT excluded.provider_meta
);

-- name: get_messages(conversation_id)
-- The messages of one conversation by timestamp (NULL first), then message_id.
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
ORDER BY timestamp ASC, message_id ASC;

-- name: delete_conversation_messages(conversation_id)!
-- Delete the messages of one conversation (before the conversation row itself).
DELETE FROM messages
WHERE conversation_id = :conversation_id;
