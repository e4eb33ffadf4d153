-- Connection setup: run on every new connection, outside any transaction.

-- name: configure_connection#
-- Foreign keys are off by default in SQLite and the schema relies on their cascades.
-- (Connection-local: it writes nothing to the file.)
PRAGMA foreign_keys = ON;

-- name: use_wal#
-- Write-ahead logging lets readers work while one writer writes. It is stored in the
-- file's header, so it is switched on only once the file's schema version is known to be
-- one this code handles: a newer database is refused without a byte of it changed.
PRAGMA journal_mode = WAL;

-- name: use_rollback_journal#
-- A backup is one self-contained file: no -wal or -shm beside it when it is opened.
PRAGMA journal_mode = DELETE;

-- name: database_file()$
-- The file behind the connection ('' for an in-memory database): where a backup goes.
SELECT file
FROM pragma_database_list
WHERE name = 'main';

-- name: quick_check()
-- SQLite's structural check of every table and index ('ok' when clean): a migration's
-- result is checked with it, and with foreign_key_check, before it is committed.
SELECT qc.quick_check AS problem
FROM pragma_quick_check() AS qc;

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
