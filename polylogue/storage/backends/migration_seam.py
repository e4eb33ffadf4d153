"""The seam the migration runner drives: what a backend lends it, beside the protocol.

:mod:`polylogue.storage.migrate` runs every dialect's scripts the same way; a backend
lends it a connection outside any transaction, its own transaction verbs and error
translation, and the checks that need no runner of their own (a read-only open that must
not migrate checks the version instead). Kept apart from ``base.py``, which is the
protocol's methods only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

from polylogue.errors import MigrationError
from polylogue.storage.backends.transactions import TransactionalBackend
from polylogue.storage.faults import cleaning_up
from polylogue.storage.migrate import MigrationRunner, read_version
from polylogue.storage.sqlfiles import QuerySpec


class MigrationSeam(TransactionalBackend):
    """Migration hooks of :class:`~polylogue.storage.backends.base.SQLBackend`."""

    dialect: ClassVar[str]
    dialect_queries: ClassVar[Mapping[str, QuerySpec]]
    queries: Any

    migration_lock_key: int = 0
    """The ``lock_key`` of the dialect's ``lock_migrations*`` queries, where it has them."""

    @property
    def migration_dialect(self) -> str:
        """The folder of this dialect's scripts under ``migrations/``."""
        return self.dialect

    def migration_statements(self, sql: str) -> Iterable[str]:
        """A migration script as the driver runs it: whole, unless a dialect splits it."""
        return [sql]

    @contextmanager
    def migration_connection(self) -> Iterator[Any]:
        """A connection of the calling thread, outside any transaction, for one run."""
        if self.in_transaction:
            raise MigrationError("cannot migrate inside an open transaction")
        with self._own_connection() as conn:
            yield conn

    @contextmanager
    def migration_transaction(self, conn: Any) -> Iterator[None]:
        """One migration step in a transaction of the binding's own verbs (SQLite's
        ``BEGIN IMMEDIATE`` and DuckDB's write lock included); any failure rolls it back."""
        with self._errors("migrate (begin)"):
            self._begin_outer(conn)
        try:
            yield
            with self._errors("migrate (commit)"):
                self._commit_outer(conn)
        except BaseException as exc:
            with cleaning_up(exc, "the rollback"), self._errors("migrate (rollback)"):
                self._rollback_outer(conn)
            raise

    def migration_errors(self, operation: str) -> AbstractContextManager[None]:
        """Driver errors of a migration step as :class:`DatabaseError` naming it."""
        return self._errors(operation)

    def write_migration_backup(self, conn: Any, version: int, reaching: int) -> Path | None:
        """Copy the database aside before migrating it; only SQLite files have a copy."""
        return None

    read_only: bool = False
    """Opened for reading only (SQLite and DuckDB files): never created, never migrated."""

    def _migrate_on_open(self) -> None:
        """Migrate while opening (read-only: check instead); a failure closes what opened."""
        try:
            self.check_schema_current() if self.read_only else self.migration_runner().migrate()
        except BaseException as exc:
            with cleaning_up(exc, "closing the backend"):
                self.close()
            raise

    def check_schema_current(self) -> None:
        """Raise :class:`MigrationError` unless the database is at this code's schema
        version, changing nothing: what a reader that must not migrate checks first."""
        status = self.migration_runner().status()
        if status.pending:
            raise MigrationError(
                f"{self.describe()} is at schema version {status.current_version}, this code"
                f" needs {status.target_version}: run polylogue migrate on it (or open it"
                " without read_only) first; nothing was changed"
            )

    def migration_runner(self) -> MigrationRunner:
        """The runner for this database: ``status()``, ``migrate(dry_run=...)``."""
        return MigrationRunner(self, where=self.describe())

    def schema_version(self) -> int:
        """The schema version the database is at (0 for an empty one): ``current_schema_version``
        (``schema_migrations.sql``) where the dialect declares it, else SQLite's file header."""
        with self._reading("schema_version") as conn:
            return read_version(self, conn)
