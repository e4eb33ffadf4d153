-- PostgreSQL schema at version 4, the baseline: it applies only to an empty schema.
-- The same logical schema as SQLite's 0001-0004 history, written for PostgreSQL:
-- - JSON columns are jsonb; source_name is generated (STORED) from provider_meta ->> 'source';
-- - ids and timestamps are text COLLATE "C" (byte order, as on SQLite), so the indexes
--   serve the queries' ORDER BY ... COLLATE "C";
-- - sizes, versions and durations are bigint (SQLite integers are 64-bit).
-- Everything is created in the schema the backend's search_path names (its `schema`
-- option, default public); the runner has created that schema, if it was missing, in the
-- same transaction (connection.sql: create_schema_if_missing).

CREATE TABLE conversations (
    conversation_id TEXT COLLATE "C" PRIMARY KEY,
    provider_name TEXT COLLATE "C" NOT NULL,
    provider_conversation_id TEXT COLLATE "C" NOT NULL,
    title TEXT,
    created_at TEXT COLLATE "C",
    updated_at TEXT COLLATE "C",
    content_hash TEXT NOT NULL,
    provider_meta JSONB,
    source_name TEXT COLLATE "C" GENERATED ALWAYS AS (
        provider_meta ->> 'source'
    ) STORED,
    version BIGINT NOT NULL
);

CREATE INDEX idx_conversations_provider
ON conversations (provider_name, provider_conversation_id);

CREATE INDEX idx_conversations_source_name ON conversations (source_name);

-- list_conversations: newest updated_at first, NULL last, then by id.
CREATE INDEX idx_conversations_updated
ON conversations (updated_at DESC NULLS LAST, conversation_id);

CREATE TABLE messages (
    message_id TEXT COLLATE "C" PRIMARY KEY,
    conversation_id TEXT COLLATE "C" NOT NULL
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    provider_message_id TEXT,
    role TEXT,
    text TEXT,
    timestamp TEXT COLLATE "C",
    content_hash TEXT NOT NULL,
    provider_meta JSONB,
    version BIGINT NOT NULL
);

CREATE INDEX idx_messages_conversation ON messages (conversation_id);

CREATE TABLE attachments (
    attachment_id TEXT COLLATE "C" PRIMARY KEY,
    mime_type TEXT,
    size_bytes BIGINT,
    path TEXT,
    ref_count INTEGER NOT NULL DEFAULT 0,
    provider_meta JSONB
);

CREATE TABLE attachment_refs (
    ref_id TEXT COLLATE "C" PRIMARY KEY,
    attachment_id TEXT COLLATE "C" NOT NULL
    REFERENCES attachments (attachment_id) ON DELETE CASCADE,
    conversation_id TEXT COLLATE "C" NOT NULL
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    message_id TEXT COLLATE "C"
    REFERENCES messages (message_id) ON DELETE SET NULL,
    provider_meta JSONB
);

CREATE INDEX idx_attachment_refs_conversation ON attachment_refs (conversation_id);

CREATE INDEX idx_attachment_refs_message ON attachment_refs (message_id);

CREATE INDEX idx_attachment_refs_attachment ON attachment_refs (attachment_id);

CREATE TABLE runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    timestamp TEXT COLLATE "C" NOT NULL,
    plan_snapshot JSONB,
    counts_json JSONB,
    drift_json JSONB,
    indexed BOOLEAN,
    duration_ms BIGINT
);

CREATE INDEX idx_runs_timestamp ON runs (timestamp);
