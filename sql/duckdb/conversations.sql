-- Conversations: upsert that skips unchanged rows, point and list reads, delete.

-- name: upsert_conversations(conversation_id, provider_name, provider_conversation_id, title, created_at, updated_at, content_hash, provider_meta, version)!
-- Insert conversations, or update one when a stored field differs. Provider ids and
-- version are never changed by an update, and an unchanged row is not rewritten: the
-- row count is how many were inserted or changed. One query for one conversation and
-- for a batch (save_conversation passes a batch of one).
-- One statement for the batch (a DuckDB statement costs milliseconds here). Each parameter is the list of one column's values. When an id
-- occurs twice in the batch the last occurrence wins, as if the rows were upserted one
-- after the other (DuckDB itself would keep the first).
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
SELECT
    batch.conversation_id,
    batch.provider_name,
    batch.provider_conversation_id,
    batch.title,
    batch.created_at,
    batch.updated_at,
    batch.content_hash,
    batch.provider_meta,
    batch.version
FROM (
    SELECT
        unnest(:conversation_id) AS conversation_id,
        unnest(:provider_name) AS provider_name,
        unnest(:provider_conversation_id) AS provider_conversation_id,
        unnest(:title) AS title,
        unnest(:created_at) AS created_at,
        unnest(:updated_at) AS updated_at,
        unnest(:content_hash) AS content_hash,
        unnest(:provider_meta) AS provider_meta,
        unnest(:version) AS version,
        generate_subscripts(:conversation_id, 1) AS position
) AS batch
QUALIFY
    row_number() OVER (
        PARTITION BY batch.conversation_id ORDER BY batch.position DESC
    ) = 1
ON CONFLICT (conversation_id) DO UPDATE SET
    title = excluded.title,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    conversations.title IS DISTINCT FROM excluded.title
    OR conversations.created_at IS DISTINCT FROM excluded.created_at
    OR conversations.updated_at IS DISTINCT FROM excluded.updated_at
    OR conversations.content_hash IS DISTINCT FROM excluded.content_hash
    OR conversations.provider_meta IS DISTINCT FROM excluded.provider_meta
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
-- source (provider_meta.source) and provider; max_rows NULL means no limit. Text sorts
-- by code point (DuckDB's default collation), as SQLite's BINARY does.
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
ORDER BY updated_at DESC NULLS LAST, conversation_id ASC
LIMIT :max_rows OFFSET :skip_rows;

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
-- same transaction (there is no ON DELETE CASCADE in DuckDB).
DELETE FROM conversations
WHERE conversation_id = :conversation_id;
