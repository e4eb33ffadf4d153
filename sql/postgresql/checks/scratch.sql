-- The scratch schema of `polylogue sql check` on PostgreSQL (polylogue/sqlcheck/schema.py).

-- name: drop_current_schema#
-- Drop the schema the connection's search_path names (the check's scratch schema) with
-- everything in it. A schema name cannot be a bound parameter, hence the dynamic DDL.
DO $$
BEGIN
    EXECUTE format('DROP SCHEMA %I CASCADE', current_schema());
END
$$;
