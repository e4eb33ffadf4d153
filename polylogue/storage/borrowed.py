"""The function API's SQLite backend over a caller's open ``sqlite3.Connection``.

Existing callers (:mod:`polylogue.storage.db`, :mod:`polylogue.storage.store`) hand in a
connection they own, in Python's implicit-transaction mode, and commit it themselves. That
mode belongs to the function API, so it lives here as a subclass rather than as branches in
:class:`~polylogue.storage.backends.sqlite.backend.SQLiteBackend`: the backend never opens, closes
or commits the connection; its outermost level is a savepoint inside the caller's
transaction. Only the migration runner, which needs its own commits, gets real
``BEGIN``/``COMMIT`` on it (the connection is then in autocommit, outside any transaction).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.backends.sqlite.connection import DEFAULT_BUSY_TIMEOUT, prepare_connection


class BorrowedSQLiteBackend(SQLiteBackend):
    """A :class:`SQLiteBackend` over ``conn``, which stays the caller's.

    It neither migrates on creation nor closes ``conn``, and never commits the caller's
    work (see the module docstring).
    """

    connection: sqlite3.Connection
    """The caller's connection, the only one this backend uses."""
    _migrating: bool

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._prepare("normal", DEFAULT_BUSY_TIMEOUT)
        self.connection = conn
        self._migrating = False

    def configure_connection(self, operation: str) -> None:
        """Give the connection the settings the backend's own connections get (WAL,
        foreign keys, busy timeout); a failure names ``operation``."""
        with self._errors(operation):
            prepare_connection(self.connection, self.queries, self.synchronous)

    def describe(self) -> str:
        return "sqlite (borrowed connection)"

    def _thread_connection(self) -> sqlite3.Connection:
        return self.connection

    # -- the outer verbs: a savepoint in the caller's transaction, except while migrating

    def _begin_outer(self, conn: Any) -> None:
        if self._migrating:
            super()._begin_outer(conn)
            return
        if not conn.in_transaction:
            conn.execute("BEGIN")
        conn.execute("SAVEPOINT polylogue_call")

    def _commit_outer(self, conn: Any) -> None:
        if self._migrating:
            super()._commit_outer(conn)
        else:
            conn.execute("RELEASE SAVEPOINT polylogue_call")

    def _rollback_outer(self, conn: Any) -> None:
        if self._migrating:
            super()._rollback_outer(conn)
        else:
            conn.execute("ROLLBACK TO SAVEPOINT polylogue_call")
            conn.execute("RELEASE SAVEPOINT polylogue_call")

    @contextmanager
    def migration_connection(self) -> Iterator[sqlite3.Connection]:
        """The connection in autocommit (see :class:`SQLiteBackend`), with real outer
        verbs for the run: each script commits on its own."""
        with super().migration_connection() as conn:
            self._migrating = True
            try:
                yield conn
            finally:
                self._migrating = False


__all__ = ["BorrowedSQLiteBackend"]
