-- Catalog queries of `polylogue sql check` (polylogue/sqlcheck/schema.py): what a scratch
-- database built from the migrations holds, in the same columns on every dialect, so that
-- the schemas of the dialects can be compared. Not used by the binding.

-- name: catalog_columns()
-- Every column of every table: declared type, NOT NULL, default, generated or not.
SELECT
    c.table_name,
    c.column_name,
    c.data_type,
    c.column_default AS default_value,
    c.column_index AS position,
    NOT c.is_nullable AS not_null,
    coalesce(g.is_generated = 'ALWAYS', FALSE) AS is_generated
FROM duckdb_columns() AS c
LEFT JOIN information_schema.columns AS g
    ON
        c.schema_name = g.table_schema
        AND c.table_name = g.table_name
        AND c.column_name = g.column_name
WHERE c.schema_name = current_schema() AND NOT c.internal
ORDER BY c.table_name, c.column_index;

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
        AND k.table_name = t.table_name
WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = current_schema()
ORDER BY k.table_name, k.ordinal_position;

-- name: catalog_foreign_keys()
-- Every foreign key column with the column it references and its ON DELETE action.
SELECT
    c.table_name,
    unnest(c.constraint_column_names) AS column_name,
    c.referenced_table AS ref_table,
    unnest(c.referenced_column_names) AS ref_column,
    'NO ACTION' AS on_delete
FROM duckdb_constraints() AS c
WHERE c.constraint_type = 'FOREIGN KEY' AND c.schema_name = current_schema()
ORDER BY c.table_name;

-- name: catalog_indexes()
-- Every index made by CREATE INDEX, one row per column (DuckDB lists an index's columns
-- as one text: '[a, b]').
SELECT
    i.table_name,
    i.index_name,
    i.is_unique,
    trim(e.column_name) AS column_name,
    e.position
FROM duckdb_indexes() AS i,
    unnest(string_split(trim(i.expressions, '[]'), ','))
    WITH ORDINALITY AS e (column_name, position)
WHERE i.schema_name = current_schema()
ORDER BY i.table_name, i.index_name, e.position;
