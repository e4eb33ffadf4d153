-- Bookkeeping of the migration runner. DuckDB has no user_version: the schema version is
-- the newest version recorded here (the runner records each script in the transaction
-- that applies it).

-- name: create_schema_migrations()!
-- Create the bookkeeping table if it does not exist yet (inside the migration's
-- transaction).
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    applied_at VARCHAR NOT NULL
);

-- name: schema_migrations_exists()$
-- 1 when the bookkeeping table exists in the current database and schema, else 0.
SELECT count(*) AS found
FROM information_schema.tables
WHERE
    table_catalog = current_database()
    AND table_schema = current_schema()
    AND table_name = 'schema_migrations';

-- name: current_schema_version()$
-- The schema version: the newest recorded script (0 when none is).
SELECT coalesce(max(version), 0) AS version
FROM schema_migrations;

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
-- Remember that a script was applied.
INSERT INTO schema_migrations (version, name, checksum, applied_at)
VALUES (:version, :name, :checksum, :applied_at);
