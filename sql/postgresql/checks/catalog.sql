-- Catalog queries of `polylogue sql check` (polylogue/sqlcheck/schema.py): what a scratch
-- database built from the migrations holds, in the same columns on every dialect, so that
-- the schemas of the dialects can be compared. Not used by the binding. The scratch
-- schema is the connection's current_schema().

-- name: catalog_columns()
-- Every column of every table: declared type, NOT NULL, default, generated or not.
SELECT
    c.table_name,
    c.column_name,
    c.data_type,
    c.column_default AS default_value,
    c.ordinal_position AS position,
    c.is_nullable = 'NO' AS not_null,
    c.is_generated = 'ALWAYS' AS is_generated
FROM information_schema.columns AS c
WHERE c.table_schema = current_schema()
ORDER BY c.table_name, c.ordinal_position;

-- name: catalog_primary_keys()
-- The primary key columns of every table, in key order.
SELECT
    k.table_name,
    k.column_name,
    k.ordinal_position AS position
FROM information_schema.key_column_usage AS k
INNER JOIN information_schema.table_constraints AS t
    ON
        k.constraint_schema = t.constraint_schema
        AND k.constraint_name = t.constraint_name
WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = current_schema()
ORDER BY k.table_name, k.ordinal_position;

-- name: catalog_foreign_keys()
-- Every foreign key column with the column it references and its ON DELETE action.
SELECT
    cl.relname AS table_name,
    a.attname AS column_name,
    rc.relname AS ref_table,
    ra.attname AS ref_column,
    CASE con.confdeltype
        WHEN 'c' THEN 'CASCADE'
        WHEN 'n' THEN 'SET NULL'
        WHEN 'd' THEN 'SET DEFAULT'
        WHEN 'r' THEN 'RESTRICT'
        ELSE 'NO ACTION'
    END AS on_delete
FROM pg_constraint AS con
INNER JOIN pg_class AS cl ON con.conrelid = cl.oid
INNER JOIN pg_class AS rc ON con.confrelid = rc.oid
CROSS JOIN LATERAL unnest(con.conkey, con.confkey) AS k (col, ref_col)
INNER JOIN pg_attribute AS a ON cl.oid = a.attrelid AND k.col = a.attnum
INNER JOIN pg_attribute AS ra ON rc.oid = ra.attrelid AND k.ref_col = ra.attnum
WHERE con.contype = 'f' AND con.connamespace = current_schema()::REGNAMESPACE
ORDER BY cl.relname, a.attname;

-- name: catalog_indexes()
-- Every index made by CREATE INDEX (not those of primary keys), one row per column.
SELECT
    t.relname AS table_name,
    ic.relname AS index_name,
    i.indisunique AS is_unique,
    a.attname AS column_name,
    k.position
FROM pg_index AS i
INNER JOIN pg_class AS t ON i.indrelid = t.oid
INNER JOIN pg_class AS ic ON i.indexrelid = ic.oid
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, position)
INNER JOIN pg_attribute AS a ON t.oid = a.attrelid AND k.attnum = a.attnum
WHERE t.relnamespace = current_schema()::REGNAMESPACE AND NOT i.indisprimary
ORDER BY t.relname, ic.relname, k.position;
