-- Schema version 4: conversations gets source_name, generated from provider_meta.source.
-- SQLite cannot add a STORED generated column with ALTER TABLE, so the table is rebuilt
-- (the runner turns foreign keys off before BEGIN and runs foreign_key_check before COMMIT).
-- Also adds the index list_conversations walks (newest updated_at first).

CREATE TABLE conversations_v4 (
    conversation_id TEXT PRIMARY KEY,
    provider_name TEXT NOT NULL,
    provider_conversation_id TEXT NOT NULL,
    title TEXT,
    created_at TEXT,
    updated_at TEXT,
    content_hash TEXT NOT NULL,
    provider_meta TEXT,
    source_name TEXT GENERATED ALWAYS AS (
        json_extract(provider_meta, '$.source')
    ) STORED,
    version INTEGER NOT NULL
);

INSERT INTO conversations_v4 (
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
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations;

DROP TABLE conversations;

ALTER TABLE conversations_v4 RENAME TO conversations;

CREATE INDEX idx_conversations_provider
ON conversations (provider_name, provider_conversation_id);

CREATE INDEX idx_conversations_source_name ON conversations (source_name);

CREATE INDEX idx_conversations_updated
ON conversations (updated_at DESC, conversation_id);
