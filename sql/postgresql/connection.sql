-- What only the PostgreSQL backend needs: the migration locks and the schema version.
-- lock_key is a constant bigint derived from the schema name, so that migrators of
-- different schemas in one database do not wait for each other.

-- name: lock_migrations(lock_key)$
-- Take the migration lock for the rest of the current transaction (waits for it).
SELECT pg_advisory_xact_lock(cast(:lock_key AS BIGINT)) IS NULL AS locked;

-- name: lock_migrations_session(lock_key)$
-- Take the migration lock for the session, outside any transaction: for scripts marked
-- no-transaction (CREATE INDEX CONCURRENTLY cannot run under a transaction's lock).
SELECT pg_advisory_lock(cast(:lock_key AS BIGINT)) IS NULL AS locked;

-- name: unlock_migrations_session(lock_key)$
-- Give back the session-level migration lock.
SELECT pg_advisory_unlock(cast(:lock_key AS BIGINT)) AS unlocked;

-- name: create_schema_if_missing#
-- Create the schema that search_path names (the backend sets it to its `schema` option)
-- when it does not exist; run by the migration runner after taking its lock.
DO $$
DECLARE
    target_schema TEXT := (parse_ident(current_setting('search_path')))[1];
BEGIN
    IF to_regnamespace(quote_ident(target_schema)) IS NULL THEN
        EXECUTE format('CREATE SCHEMA %I', target_schema);
    END IF;
END
$$;
