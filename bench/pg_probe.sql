-- Statements bench/pg_probe.py compares with polylogue's own PostgreSQL queries: plain
-- COPY of the rows polylogue writes (the reference), the row-wise message upsert (executemany) and COPY into a staging
-- table followed by one set-based upsert.

-- name: copy_conversations#
COPY conversations (
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
) FROM STDIN;

-- name: copy_messages#
COPY messages (
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
) FROM STDIN;

-- name: copy_attachments#
COPY attachments (
    attachment_id,
    mime_type,
    size_bytes,
    path,
    provider_meta,
    ref_count
) FROM STDIN;

-- name: copy_attachment_refs#
COPY attachment_refs (
    ref_id,
    attachment_id,
    conversation_id,
    message_id,
    provider_meta
) FROM STDIN;

-- name: upsert_messages_rowwise(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)*!
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
VALUES (
    :message_id,
    :conversation_id,
    :provider_message_id,
    :role,
    :text,
    :timestamp,
    :content_hash,
    cast(:provider_meta AS JSONB),
    :version
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

-- name: stored_messages(message_id)
-- Which of a batch's messages are stored already, and under which conversation: the first
-- step of "classify, then COPY the new ones".
SELECT
    message_id,
    conversation_id
FROM messages
WHERE message_id = any(cast(:message_id AS TEXT[]));

-- name: create_staging#
CREATE TEMPORARY TABLE messages_staging (
    LIKE messages INCLUDING DEFAULTS
) ON COMMIT DROP;

-- name: copy_staging#
COPY messages_staging (
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
) FROM STDIN;

-- name: upsert_from_staging#
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
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
FROM messages_staging
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

-- name: drop_current_schema#
-- Drop the schema the connection's search_path names, with everything in it.
DO $$
BEGIN
    EXECUTE format(
        'DROP SCHEMA %I CASCADE',
        (parse_ident(current_setting('search_path')))[1]
    );
END
$$;

-- name: upsert_conversation_row(conversation_id, provider_name, provider_conversation_id, title, created_at, updated_at, content_hash, provider_meta, version)!
-- One conversation as a raw-driver user would write it (a single-row VALUES), for the
-- raw per-bundle reference; polylogue runs upsert_conversations with one row instead.
INSERT INTO conversations AS c (
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
    cast(:provider_meta AS JSONB),
    :version
)
ON CONFLICT (conversation_id) DO UPDATE SET
    title = excluded.title,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    c.title, c.created_at, c.updated_at, c.content_hash, c.provider_meta
) IS DISTINCT FROM (
    excluded.title,
    excluded.created_at,
    excluded.updated_at,
    excluded.content_hash,
    excluded.provider_meta
);

-- name: messages_buffer_use()^
-- Blocks the messages table (heap, its indexes, its TOAST) has read from the operating
-- system and found in shared buffers so far, as this backend's statistics snapshot sees
-- them (bench.pg_reingest clears the snapshot first).
SELECT
    coalesce(heap_blks_read, 0) AS heap_blks_read,
    coalesce(heap_blks_hit, 0) AS heap_blks_hit,
    coalesce(idx_blks_read, 0) AS idx_blks_read,
    coalesce(idx_blks_hit, 0) AS idx_blks_hit,
    coalesce(toast_blks_read, 0) AS toast_blks_read,
    coalesce(toast_blks_hit, 0) AS toast_blks_hit
FROM pg_statio_user_tables
WHERE relname = 'messages' AND schemaname = current_schema();

-- name: clear_statistics_snapshot()^
SELECT pg_stat_clear_snapshot() AS cleared;

-- name: messages_size()$
SELECT pg_total_relation_size('messages') AS total_bytes;
