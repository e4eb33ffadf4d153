-- Conversations: upsert that skips unchanged rows, point and list reads, delete.

-- name: upsert_conversations(conversation_id, provider_name, provider_conversation_id, title, created_at, updated_at, content_hash, provider_meta, version)*!
-- Insert conversations, or update one when a stored field differs. Provider ids and
-- version are never changed by an update, and an unchanged row is not rewritten: the
-- row count is how many were inserted or changed. One query for one conversation and
-- for a batch (save_conversation passes a batch of one).
-- Run once per row (executemany): SQLite binds no lists, and a statement here costs
-- microseconds, so row-wise is its set-based form.
INSERT INTO conversations (
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
)
VALUES (
    :conversation_id,
    :provider_name,
    :provider_conversation_id,
    :title,
    :created_at,
    :updated_at,
    :content_hash,
    :provider_meta,
    :version
)
ON CONFLICT (conversation_id) DO UPDATE SET
    title = excluded.title,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    conversations.title IS NOT excluded.title
    OR conversations.created_at IS NOT excluded.created_at
    OR conversations.updated_at IS NOT excluded.updated_at
    OR conversations.content_hash IS NOT excluded.content_hash
    OR conversations.provider_meta IS NOT excluded.provider_meta
);

-- name: get_conversation(conversation_id)^
-- One conversation by id, or nothing.
SELECT
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations
WHERE conversation_id = :conversation_id;

-- name: list_conversations(source, provider, max_rows, skip_rows)
-- Conversations newest updated_at first (NULL last, then by id), optionally filtered by
-- source (provider_meta.source) and provider; max_rows NULL means no limit.
SELECT
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations
WHERE
    (:source IS NULL OR source_name = :source)
    AND (:provider IS NULL OR provider_name = :provider)
ORDER BY updated_at DESC, conversation_id ASC
LIMIT coalesce(:max_rows, -1) OFFSET :skip_rows;

-- name: list_conversations_by_id(after_id, provider, since, max_rows)
-- Conversations in conversation_id order (code points, as every dialect sorts here),
-- the next max_rows after after_id ('' for the first page): the keyset pages of `polylogue
-- export`, `copy` and `verify`, which never skip or repeat a row. Optionally only one
-- provider, and only conversations updated at or after `since` (ISO-8601 text).
SELECT
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations
WHERE
    conversation_id > :after_id
    AND (:provider IS NULL OR provider_name = :provider)
    AND (:since IS NULL OR updated_at >= :since)
ORDER BY conversation_id ASC
LIMIT :max_rows;

-- name: delete_conversation(conversation_id)!
-- Delete one conversation row. The binding deletes its refs and messages first, in the
-- same transaction, so that attachment ref counts stay right on every dialect.
DELETE FROM conversations
WHERE conversation_id = :conversation_id;
