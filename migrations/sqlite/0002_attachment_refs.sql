-- Schema version 2: split attachments into shared attachment rows and per-conversation refs.
-- ref_id = 'ref-' || first 16 hex digits of sha256(attachment_id:conversation_id:message_id),
-- the same formula as polylogue.storage.records.make_ref_id (sha256_hex is registered by
-- the SQLite connection). A message id that no longer exists becomes NULL (the v1 foreign
-- key said ON DELETE SET NULL); ref_count is the number of refs each attachment has.
-- The indexes are built before the recount: without the one on attachment_id every
-- attachment's count scanned all refs (16k attachments: 16 s; 100k: not done in 9 min).
-- The first text of this script built them after it, with the same result:
-- polylogue: replaces sha256:a71286da057b3ce666df2898942c658677d7939b11107deb684bf8bd739f99e2

ALTER TABLE attachments RENAME TO attachments_v1;

CREATE TABLE attachments (
    attachment_id TEXT PRIMARY KEY,
    mime_type TEXT,
    size_bytes INTEGER,
    path TEXT,
    ref_count INTEGER NOT NULL DEFAULT 0,
    provider_meta TEXT
);

INSERT INTO attachments (
    attachment_id, mime_type, size_bytes, path, ref_count, provider_meta
)
SELECT
    attachment_id,
    max(mime_type) AS mime_type,
    max(size_bytes) AS size_bytes,
    max(path) AS path,
    0 AS ref_count,
    max(provider_meta) AS provider_meta
FROM attachments_v1
GROUP BY attachment_id;

CREATE TABLE attachment_refs (
    ref_id TEXT PRIMARY KEY,
    attachment_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id TEXT,
    provider_meta TEXT,
    FOREIGN KEY (attachment_id)
    REFERENCES attachments (attachment_id) ON DELETE CASCADE,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    FOREIGN KEY (message_id)
    REFERENCES messages (message_id) ON DELETE SET NULL
);

INSERT OR IGNORE INTO attachment_refs (
    ref_id, attachment_id, conversation_id, message_id, provider_meta
)
SELECT
    'ref-' || substr(
        sha256_hex(
            old.attachment_id || ':' || old.conversation_id || ':'
            || coalesce(m.message_id, '')
        ),
        1,
        16
    ) AS ref_id,
    old.attachment_id,
    old.conversation_id,
    m.message_id,
    old.provider_meta
FROM attachments_v1 AS old
LEFT JOIN messages AS m ON old.message_id = m.message_id
ORDER BY old.rowid;

CREATE INDEX idx_attachment_refs_conversation ON attachment_refs (conversation_id);

CREATE INDEX idx_attachment_refs_message ON attachment_refs (message_id);

CREATE INDEX idx_attachment_refs_attachment ON attachment_refs (attachment_id);

UPDATE attachments
SET
    ref_count = (
        SELECT count(*)
        FROM attachment_refs AS r
        WHERE r.attachment_id = attachments.attachment_id
    );

DROP TABLE attachments_v1;
