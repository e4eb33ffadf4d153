"""How the migration runner drives DuckDB.

The schema version is ``max(version)`` in ``schema_migrations`` (the runner records a
script in the same transaction that applies it). Each script runs whole, inside one
transaction, under the file's write lock; DuckDB has no foreign-key constraints in this
schema (see the baseline), so ``dangling_references`` stands in for a foreign key check
before each commit. There are no no-transaction scripts: DuckDB's DDL is transactional.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from polylogue.errors import MigrationError
from polylogue.storage.faults import run_cleanups

if TYPE_CHECKING:
    from polylogue.storage.backends.duckdb import DuckDBBackend


class DuckDBMigrationTarget:
    """The :class:`~polylogue.storage.migrate.MigrationTarget` of a DuckDB backend."""

    dialect = "duckdb"

    def __init__(self, backend: DuckDBBackend) -> None:
        self.backend = backend
        self.queries = backend.queries
        self._open = False

    @contextmanager
    def migration_connection(self) -> Iterator[Any]:
        backend = self.backend
        if backend.in_transaction:
            raise MigrationError("cannot migrate inside an open transaction")
        conn = backend._acquire()
        cause: BaseException | None = None
        try:
            yield conn
        except BaseException as exc:
            cause = exc
            raise
        finally:
            run_cleanups(
                cause,
                ("the rollback", lambda: self.rollback(conn)),
                ("giving the connection back", lambda: backend._release(conn)),
            )

    def begin_locked(self, conn: Any) -> None:
        self.backend._take_write_lock("migrate (begin)")
        try:
            with self.backend._errors("migrate (begin)"):
                conn.execute("BEGIN TRANSACTION")
        except BaseException:
            self.backend._drop_write_lock()
            raise
        self._open = True

    def commit(self, conn: Any) -> None:
        try:
            with self.backend._errors("migrate (commit)"):
                conn.execute("COMMIT")
        finally:
            self._end()

    def rollback(self, conn: Any) -> None:
        if not self._open:
            return
        try:
            with self.backend._errors("migrate (rollback)"):
                conn.execute("ROLLBACK")
        finally:
            self._end()

    def _end(self) -> None:
        self._open = False
        self.backend._drop_write_lock()

    def read_version(self, conn: Any) -> int:
        with self.backend._errors("read schema version"):
            if not self.queries.schema_migrations_exists(conn):
                return 0
            return int(self.queries.current_schema_version(conn))

    def write_version(self, conn: Any, version: int) -> None:
        """Nothing to do: the version is the newest row the runner just recorded."""

    def run_script(self, conn: Any, sql: str) -> None:
        # DuckDB runs a script of several statements in one call, inside the transaction.
        conn.execute(sql)

    def check_before_commit(self, conn: Any) -> None:
        broken = self.queries.dangling_references(conn)
        if broken:
            first = ", ".join(
                f"{row['child']} -> {row['parent']} ({row['key']!r})" for row in broken
            )
            raise MigrationError(f"the script left rows pointing at nothing: {first}")

    def session_lock(self, conn: Any) -> AbstractContextManager[None]:
        raise MigrationError(
            "DuckDB migrations always run in a transaction; remove the no-transaction marker"
        )

    def run_script_outside_transaction(self, conn: Any, sql: str) -> None:
        raise MigrationError("DuckDB migrations always run in a transaction")
