-- Catalog queries of `polylogue sql check` (polylogue/sqlcheck/schema.py): what a scratch
-- database built from the migrations holds, in the same columns on every dialect, so that
-- the schemas of the dialects can be compared. Not used by the binding.

-- name: catalog_columns()
-- Every column of every table: declared type, NOT NULL, default, generated or not.
SELECT
    m.name AS table_name,
    c.name AS column_name,
    c.type AS data_type,
    c."notnull" AS not_null,
    c.dflt_value AS default_value,
    c.hidden IN (2, 3) AS is_generated,
    c.cid AS position
FROM sqlite_schema AS m
INNER JOIN pragma_table_xinfo(m.name) AS c ON m.type = 'table'
WHERE m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY m.name, c.cid;

-- name: catalog_primary_keys()
-- The primary key columns of every table, in key order.
SELECT
    m.name AS table_name,
    c.name AS column_name,
    c.pk AS position
FROM sqlite_schema AS m
INNER JOIN pragma_table_info(m.name) AS c ON m.type = 'table' AND c.pk > 0
WHERE m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY m.name, c.pk;

-- name: catalog_foreign_keys()
-- Every foreign key column with the column it references and its ON DELETE action.
SELECT
    m.name AS table_name,
    f."from" AS column_name,
    f."table" AS ref_table,
    f."to" AS ref_column,
    f.on_delete
FROM sqlite_schema AS m
INNER JOIN pragma_foreign_key_list(m.name) AS f ON m.type = 'table'
ORDER BY m.name, f.id, f.seq;

-- name: catalog_indexes()
-- Every index made by CREATE INDEX (not those of primary keys), one row per column.
SELECT
    m.name AS table_name,
    i.name AS index_name,
    i."unique" AS is_unique,
    c.name AS column_name,
    c.seqno AS position
FROM sqlite_schema AS m
INNER JOIN pragma_index_list(m.name) AS i ON m.type = 'table' AND i.origin = 'c'
INNER JOIN pragma_index_info(i.name) AS c ON TRUE
ORDER BY m.name, i.name, c.seqno;
