-- Schema version 1: conversations, messages, one attachment row per reference, runs.
-- Kept as it first shipped so that a new database walks the same history as old ones.

CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    provider_name TEXT NOT NULL,
    provider_conversation_id TEXT NOT NULL,
    title TEXT,
    created_at TEXT,
    updated_at TEXT,
    content_hash TEXT NOT NULL,
    provider_meta TEXT,
    version INTEGER NOT NULL
);

CREATE INDEX idx_conversations_provider
ON conversations (provider_name, provider_conversation_id);

CREATE TABLE messages (
    message_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    provider_message_id TEXT,
    role TEXT,
    text TEXT,
    timestamp TEXT,
    content_hash TEXT NOT NULL,
    provider_meta TEXT,
    version INTEGER NOT NULL,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE
);

CREATE INDEX idx_messages_conversation ON messages (conversation_id);

CREATE TABLE attachments (
    attachment_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    message_id TEXT,
    mime_type TEXT,
    size_bytes INTEGER,
    path TEXT,
    provider_meta TEXT,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    FOREIGN KEY (message_id)
    REFERENCES messages (message_id) ON DELETE SET NULL
);

CREATE TABLE runs (
    run_id TEXT,
    timestamp TEXT NOT NULL,
    plan_snapshot TEXT,
    counts_json TEXT,
    drift_json TEXT,
    "indexed" INTEGER,
    duration_ms INTEGER
);
