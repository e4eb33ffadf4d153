-- Connection setup: run on every new connection, outside any transaction.

-- name: configure_connection#
-- Write-ahead logging lets readers work while one writer writes; foreign keys are off
-- by default in SQLite and the schema relies on their cascades.
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;

-- name: use_synchronous_normal#
-- Durable across application crashes; a power loss may drop the last commits (WAL).
PRAGMA synchronous = NORMAL;

-- name: use_synchronous_full#
-- Durable across power loss, at the cost of an fsync per commit.
PRAGMA synchronous = FULL;

-- name: use_synchronous_off#
-- No fsync at all: only for throwaway databases and bulk loads you can redo.
PRAGMA synchronous = OFF;

-- name: disable_foreign_keys#
-- Table rebuilds in migrations need foreign keys off; it must be set outside a transaction.
PRAGMA foreign_keys = OFF;

-- name: enable_foreign_keys#
-- Restore enforcement after migrating.
PRAGMA foreign_keys = ON;

-- name: foreign_key_check()
-- Rows that break a foreign key; a migration must leave none.
SELECT
    fk."table",
    fk.rowid,
    fk.parent,
    fk.fkid
FROM pragma_foreign_key_check() AS fk;
