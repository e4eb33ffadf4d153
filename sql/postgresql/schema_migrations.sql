-- Bookkeeping of the migration runner: which script produced which version, with its
-- checksum. The schema version is the highest version recorded here (0 without the table).

-- name: create_schema_migrations()!
-- Create the bookkeeping table if it does not exist yet (inside the migration's
-- transaction, in the schema the connection's search_path names).
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);

-- name: schema_migrations_exists()$
-- True when the bookkeeping table exists in the connection's schema.
SELECT to_regclass('schema_migrations') IS NOT NULL AS found;

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
-- Remember that a script was applied (applied_at arrives as ISO-8601 text).
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (:version, :name, :checksum, cast(:applied_at AS TIMESTAMPTZ));

-- name: current_schema_version()$
-- The schema version: the highest version recorded (call only when the table exists).
SELECT coalesce(max(version), 0) AS version
FROM schema_migrations;
