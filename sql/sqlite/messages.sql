-- Messages: bulk upsert that skips unchanged rows, ordered read, delete per conversation.

-- name: upsert_messages(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)*!
-- Insert messages, or update those whose stored fields differ; run once per batch (each
-- message id once: the binding keeps the last of repeated ids). The summed row count is
-- the number of messages inserted or changed.
-- A message id belongs to one conversation for good. A row claiming a message stored
-- under another conversation is refused inside this statement: its update would set
-- version to NULL, which the NOT NULL constraint rejects, so the owner's message is
-- never overwritten and the binding then names the owner (get_message_owner). Why so:
-- SQLite can raise no error of its own outside a trigger; a check query after the write
-- would need the batch's ids as JSON, which json_each cuts at U+0000, or one query per
-- row (measured: +23% on this statement); and version, unlike conversation_id, is in no
-- index or foreign key, so naming it here costs nothing (measured; conversation_id: +8%).
-- An update by the owner keeps version as it is.
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
    version = CASE
        WHEN messages.conversation_id = excluded.conversation_id
            THEN messages.version
    END,
    role = excluded.role,
    text = excluded.text,
    timestamp = excluded.timestamp,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    messages.conversation_id IS NOT excluded.conversation_id
    OR messages.role IS NOT excluded.role
    OR messages.text IS NOT excluded.text
    OR messages.timestamp IS NOT excluded.timestamp
    OR messages.content_hash IS NOT excluded.content_hash
    OR messages.provider_meta IS NOT excluded.provider_meta
);

-- name: get_message_owner(message_id)$
-- The conversation a message id is stored under, or NULL: names the owner when a write
-- claims the message for another conversation.
SELECT conversation_id
FROM messages
WHERE message_id = :message_id;

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
ORDER BY m.conversation_id ASC, m.timestamp ASC, m.message_id ASC;
