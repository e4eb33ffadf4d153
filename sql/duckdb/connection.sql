-- Database setup and checks that only DuckDB needs.

-- name: configure_database#
-- Run once when the process opens a database file (settings are per database instance).
-- checkpoint_threshold: DuckDB checkpoints (writes the WAL's changes into the file)
-- whenever the WAL passes this size. With the default 16MB a bulk import checkpoints
-- after every other 10,000-message batch, and the checkpoints, which grow with the
-- table, dominate it (measured: 1M rows of ~1KB in 10,000-row commits took 40 s at 16MB,
-- 21 s at 256MB; 1GB was no faster and leaves a four times longer WAL to replay when a
-- process stops without checkpointing).
SET checkpoint_threshold = '256MB';

-- name: dangling_references()
-- Rows whose parent row does not exist (there are no foreign key constraints): the
-- migration runner refuses to commit a script that leaves any.
SELECT
    'messages.conversation_id' AS child,
    'conversations' AS parent,
    m.conversation_id AS key
FROM messages AS m
WHERE
    NOT EXISTS (
        SELECT 1 FROM conversations AS c
        WHERE c.conversation_id = m.conversation_id
    )
UNION ALL
SELECT
    'attachment_refs.conversation_id' AS child,
    'conversations' AS parent,
    r.conversation_id AS key
FROM attachment_refs AS r
WHERE
    NOT EXISTS (
        SELECT 1 FROM conversations AS c
        WHERE c.conversation_id = r.conversation_id
    )
UNION ALL
SELECT
    'attachment_refs.attachment_id' AS child,
    'attachments' AS parent,
    r.attachment_id AS key
FROM attachment_refs AS r
WHERE
    NOT EXISTS (
        SELECT 1 FROM attachments AS a
        WHERE a.attachment_id = r.attachment_id
    )
UNION ALL
SELECT
    'attachment_refs.message_id' AS child,
    'messages' AS parent,
    r.message_id AS key
FROM attachment_refs AS r
WHERE
    r.message_id IS NOT NULL
    AND NOT EXISTS (
        SELECT 1 FROM messages AS m
        WHERE m.message_id = r.message_id
    )
LIMIT 5;
