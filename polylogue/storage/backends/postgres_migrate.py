"""How the migration runner drives PostgreSQL: advisory locks and ``schema_migrations``.

PostgreSQL DDL is transactional, so each script runs inside ``BEGIN ... COMMIT`` holding
``pg_advisory_xact_lock(key)``: a failing script leaves nothing behind, and concurrent
migrators of the same schema queue on the lock and apply each script once (the one that
waited re-reads the version and finds the script applied). The key is a constant derived
from the schema name, so archives in different schemas of one database migrate
independently; once it holds the lock, the runner creates the schema if it is missing
(inside the same transaction). The version is the highest one recorded in
``schema_migrations``.

A script whose first line is ``-- polylogue: no-transaction`` (``CREATE INDEX
CONCURRENTLY``, which cannot run inside a transaction) runs statement by statement in
autocommit mode under the session-level ``pg_advisory_lock(key)`` instead, and is recorded
afterwards in a short locked transaction. Statements of such a script that completed
before a failure stay: write them re-runnable (``IF NOT EXISTS``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from psycopg.pq import TransactionStatus

from polylogue.errors import MigrationError
from polylogue.storage.faults import cleaning_up
from polylogue.storage.migrate import iter_statements

if TYPE_CHECKING:
    from polylogue.storage.backends.postgres import PostgresBackend

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def migration_lock_key(schema: str) -> int:
    """The advisory lock key (a signed bigint) of migrations of ``schema``."""
    digest = hashlib.sha256(f"polylogue migrations {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def statement_complete(text: str) -> bool:
    """Whether ``text`` ends outside any string, quoted name, comment or dollar quote.

    :func:`~polylogue.storage.migrate.iter_statements` glues the pieces between
    semicolons until this says yes, so that a ``;`` inside a function body or a string
    does not end a statement.
    """
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            if end < 0:
                return False
            i = end + 1
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
        elif char == "'":
            i = _skip_string(text, i)
        elif char == '"':
            end = text.find('"', i + 1)
            i = n + 1 if end < 0 else end + 1
        elif char == "$" and not _continues_word(text, i):
            match = _DOLLAR_TAG.match(text, i)
            if match is None:
                i += 1
                continue
            end = text.find(match.group(0), match.end())
            i = n + 1 if end < 0 else end + len(match.group(0))
        else:
            i += 1
    return i == n


def _continues_word(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def _skip_block_comment(text: str, i: int) -> int:
    depth, i, n = 1, i + 2, len(text)
    while depth:
        if i >= n:
            return n + 1
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _skip_string(text: str, i: int) -> int:
    backslashes = i > 0 and text[i - 1] in "eE" and not _continues_word(text, i - 1)
    i, n = i + 1, len(text)
    while i < n:
        char = text[i]
        if backslashes and char == "\\":
            i += 2
        elif char == "'":
            if text.startswith("''", i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n + 1


class PostgresMigrationTarget:
    """The :class:`~polylogue.storage.migrate.MigrationTarget` of a PostgreSQL schema."""

    dialect = "postgres"

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.queries = backend.queries
        self.lock_key = migration_lock_key(backend.schema)

    @contextmanager
    def migration_connection(self) -> Iterator[Any]:
        backend = self.backend
        if backend.in_transaction:
            raise MigrationError("cannot migrate inside an open transaction")
        conn = backend._acquire()
        try:
            yield conn
        except BaseException as exc:
            with cleaning_up(exc, "giving the connection back"):
                backend._release(conn)
            raise
        backend._release(conn)

    def begin_locked(self, conn: Any) -> None:
        with self.backend._errors("migrate (begin)"):
            conn.execute("BEGIN")
            self.queries.lock_migrations(conn, lock_key=self.lock_key)
            self.queries.create_schema_if_missing(conn)

    def commit(self, conn: Any) -> None:
        with self.backend._errors("migrate (commit)"):
            conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        if conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
            return  # nothing to undo
        with self.backend._errors("migrate (rollback)"):
            conn.execute("ROLLBACK")

    def read_version(self, conn: Any) -> int:
        with self.backend._errors("read schema version"):
            if not self.queries.schema_migrations_exists(conn):
                return 0
            return int(self.queries.current_schema_version(conn))

    def write_version(self, conn: Any, version: int) -> None:
        """Nothing to do: the version is the highest one the runner recorded."""

    def run_script(self, conn: Any, sql: str) -> None:
        # Without parameters psycopg sends the whole script as one simple query, which
        # runs every statement in it inside the transaction begin_locked opened.
        with self.backend._errors("migrate"):
            conn.execute(sql)

    def check_before_commit(self, conn: Any) -> None:
        """Nothing to check: PostgreSQL enforces foreign keys inside the script."""

    @contextmanager
    def session_lock(self, conn: Any) -> Iterator[None]:
        with self.backend._errors("migrate (session lock)"):
            self.queries.lock_migrations_session(conn, lock_key=self.lock_key)
        cause: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            cause = exc
            raise
        finally:
            if not conn.closed:
                with (
                    cleaning_up(cause, "the unlock"),
                    self.backend._errors("migrate (session unlock)"),
                ):
                    self.queries.unlock_migrations_session(conn, lock_key=self.lock_key)

    def run_script_outside_transaction(self, conn: Any, sql: str) -> None:
        # One statement per execute: several in one simple query would form an implicit
        # transaction, where CREATE INDEX CONCURRENTLY is refused.
        for statement in iter_statements(sql, statement_complete):
            with self.backend._errors("migrate (no-transaction)"):
                conn.execute(statement)
