-- Schema version 4 for DuckDB, created at once on an empty database: the same logical
-- schema as SQLite's migrations 0001-0004 (see ../sqlite).
--
-- Differences, and why:
-- - No FOREIGN KEY constraints. DuckDB has no ON DELETE CASCADE / SET NULL, and it checks
--   a DELETE of a parent row against the child table's index as of the transaction's
--   start: deleting a conversation's messages and then the conversation in one
--   transaction (delete_conversation, pruning) fails with "still referenced" (checked on
--   DuckDB 2.0). The binding deletes children explicitly, and the queries that insert
--   child rows check their parents themselves (see messages.sql and attachments.sql).
-- - source_name is a VIRTUAL generated column (DuckDB has no STORED ones) and has no
--   index: DuckDB refuses indexes over JSON functions. Filtering by it scans one column.
-- - No index for list_conversations' ORDER BY updated_at DESC or for runs.timestamp:
--   DuckDB never walks an index in order; it sorts (top-N) instead.
-- - JSON columns are DuckDB JSON (text, validated on write, returned as written, so a
--   \u0000 escape stays an escape); runs.indexed is a BOOLEAN.

CREATE TABLE conversations (
    conversation_id VARCHAR PRIMARY KEY,
    provider_name VARCHAR NOT NULL,
    provider_conversation_id VARCHAR NOT NULL,
    title VARCHAR,
    created_at VARCHAR,
    updated_at VARCHAR,
    content_hash VARCHAR NOT NULL,
    provider_meta JSON,
    source_name VARCHAR GENERATED ALWAYS AS (
        json_extract_string(provider_meta, '$.source')
    ) VIRTUAL,
    version INTEGER NOT NULL
);

CREATE INDEX idx_conversations_provider
ON conversations (provider_name, provider_conversation_id);

CREATE TABLE messages (
    message_id VARCHAR PRIMARY KEY,
    conversation_id VARCHAR NOT NULL,
    provider_message_id VARCHAR,
    role VARCHAR,
    text VARCHAR,
    timestamp VARCHAR,
    content_hash VARCHAR NOT NULL,
    provider_meta JSON,
    version INTEGER NOT NULL
);

CREATE INDEX idx_messages_conversation ON messages (conversation_id);

CREATE TABLE attachments (
    attachment_id VARCHAR PRIMARY KEY,
    mime_type VARCHAR,
    size_bytes BIGINT,
    path VARCHAR,
    ref_count INTEGER NOT NULL DEFAULT 0,
    provider_meta JSON
);

CREATE TABLE attachment_refs (
    ref_id VARCHAR PRIMARY KEY,
    attachment_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    message_id VARCHAR,
    provider_meta JSON
);

CREATE INDEX idx_attachment_refs_conversation ON attachment_refs (conversation_id);

CREATE INDEX idx_attachment_refs_message ON attachment_refs (message_id);

CREATE INDEX idx_attachment_refs_attachment ON attachment_refs (attachment_id);

CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    timestamp VARCHAR NOT NULL,
    plan_snapshot JSON,
    counts_json JSON,
    drift_json JSON,
    indexed BOOLEAN,
    duration_ms BIGINT
);
