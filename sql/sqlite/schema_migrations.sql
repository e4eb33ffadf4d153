-- Bookkeeping of the migration runner. The version itself is PRAGMA user_version;
-- schema_migrations records which script produced it, with its checksum.

-- name: create_schema_migrations()!
-- Create the bookkeeping table if it does not exist yet (a plain statement, not a
-- script: it runs inside the migration's transaction).
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
);

-- name: schema_migrations_exists()$
-- 1 when the bookkeeping table exists, else 0.
SELECT count(*) AS found
FROM sqlite_master
WHERE type = 'table' AND name = 'schema_migrations';

-- name: get_applied_migrations()
-- Every recorded script, oldest first.
SELECT
    version,
    name,
    checksum,
    applied_at
FROM schema_migrations
ORDER BY version ASC;

-- name: record_migration(version, name, checksum, applied_at)!
-- Remember that a script was applied (or adopted from a database made before this table).
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (:version, :name, :checksum, :applied_at);
