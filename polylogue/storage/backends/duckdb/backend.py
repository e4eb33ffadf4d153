"""DuckDB, the columnar choice for analysing an archive (counts per provider, per month).

Connections: one database handle per file per process (shared by every backend on that
file, see :mod:`~polylogue.storage.backends.duckdb.handles`) and one cursor per thread.
Another process that has the file open makes opening fail with
:class:`~polylogue.errors.DatabaseInUseError`; ``read_only=True`` opens an archive for
analysis while no process writes it.

Writers are serialised: DuckDB's optimistic concurrency fails the later of two
transactions that touch the same row, so a transaction takes the file's write lock at
``begin()`` and keeps it to its end (``busy_timeout`` seconds of waiting, then
:class:`~polylogue.errors.OperationalError`). Reads outside a transaction never wait.

Nested transactions: DuckDB has no savepoints. ``begin()`` inside a transaction only
counts the level and the matching ``commit()`` does nothing. An inner ``rollback()``
cannot undo only its level, so it rolls back the whole transaction at once and marks it
failed: the work stays undone, and the outermost ``commit()`` raises
:class:`~polylogue.errors.TransactionError` saying an inner level rolled back (the
statements run in between are rolled back too). Likewise any failed statement inside a
transaction fails the whole transaction (DuckDB aborts it), so its ``commit()`` raises
instead of pretending. Work a caller rolled back is never committed.

Writes are set-based: a batch of messages, attachments, refs or conversations is one
statement whose parameters are lists of column values (``INSERT ... SELECT
unnest(:message_id), ...``): a DuckDB statement costs milliseconds, a row microseconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from polylogue.errors import DatabaseError, IntegrityError, OperationalError
from polylogue.storage import rows
from polylogue.storage.backends.base import SQLBackend
from polylogue.storage.backends.config import BackendConfig, default_db_path
from polylogue.storage.backends.duckdb.adapter import DuckDBConnectionAdapter
from polylogue.storage.backends.duckdb.handles import (
    MEMORY,
    SharedDatabase,
    io_hint,
    open_database,
    release_database,
)
from polylogue.storage.backends.duckdb.unchanged import UNCHANGED_READS, bundle_is_stored
from polylogue.storage.faults import describe_os_error, run_cleanups
from polylogue.storage.records import AttachmentRecord
from polylogue.storage.sqlfiles import QuerySpec

DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_MEMORY_LIMIT = "256MB"
"""DuckDB's buffer memory unless configured (DuckDB's own default is 80% of RAM, a lot
for a library sharing its process): enough for a bulk import at full speed (measured:
peak RSS 460 MB importing 1M messages); indexes and data beyond it are read from disk."""
SPLIT_UPSERT_ROWS = 1_000
"""Batches of at least this many messages skip ON CONFLICT (see sql/duckdb/messages.sql)."""
NO_ACTIVE_TRANSACTION = "no transaction is active"
"""DuckDB's words for a ROLLBACK with nothing to roll back."""
FOREIGN_KEY_VIOLATION = "foreign key violation"
"""How the query files word a missing parent row (there are no FOREIGN KEY constraints)."""


class DuckDBBackend(SQLBackend):
    """The archive in one DuckDB file (or ``":memory:"``, private to this backend).

    ``memory_limit`` caps DuckDB's buffer memory (``"512MB"``, ``"2GB"``; default
    :data:`DEFAULT_MEMORY_LIMIT`, raise it for heavy analysis); ``busy_timeout`` is how
    many seconds a writer waits for another thread's transaction. Migrations are applied
    when it opens unless ``migrate=False``; a ``read_only`` database must already be at
    the current schema version. ``sql_dir`` names an override folder of queries (default
    ``$POLYLOGUE_SQL_DIR``, else the packaged ones; see :mod:`polylogue.storage.sqlfiles`).
    """

    dialect: ClassVar[str] = "duckdb"
    driver_adapter: ClassVar[type[DuckDBConnectionAdapter]] = DuckDBConnectionAdapter
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (duckdb.Error,)
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = (duckdb.IntegrityError,)
    operational_errors: ClassVar[tuple[type[Exception], ...]] = (duckdb.OperationalError,)
    supports_savepoints: ClassVar[bool] = False
    begin_verb: ClassVar[str] = "BEGIN TRANSACTION"
    binds_lists: ClassVar[bool] = True
    split_upsert_rows: ClassVar[int | None] = SPLIT_UPSERT_ROWS
    reads_before: ClassVar[dict[str, tuple[str, ...]]] = {"save_bundles": UNCHANGED_READS}
    dialect_queries: ClassVar[dict[str, QuerySpec]] = {
        "current_schema_version": QuerySpec("schema_migrations.sql", (), "$"),
        "configure_database": QuerySpec("connection.sql", (), "#"),
        "dangling_references": QuerySpec("connection.sql"),
    }

    def __init__(
        self,
        db_path: str | os.PathLike[str] = MEMORY,
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrate: bool = True,
        sql_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(sql_dir)
        self.read_only = read_only
        self.memory_limit = memory_limit or DEFAULT_MEMORY_LIMIT
        self.busy_timeout = busy_timeout
        self.db_path: Path | None = (
            None if str(db_path) == MEMORY else Path(db_path).expanduser().absolute()
        )
        if self.db_path is None and read_only:
            raise DatabaseError("a read-only DuckDB database needs a file, not :memory:")
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._closed = False
        self._db: SharedDatabase = open_database(
            self.db_path,
            read_only=read_only,
            memory_limit=self.memory_limit,
            where=self.describe(),
            prepare=self.queries.configure_database,
        )
        if migrate:
            self._migrate_on_open()

    @classmethod
    def from_config(cls, config: BackendConfig, *, migrate: bool = True) -> DuckDBBackend:
        """The backend a :class:`BackendConfig` with ``backend_type="duckdb"`` names
        (``polylogue.duckdb`` next to the default SQLite archive when no path is given)."""
        return cls(
            config.db_path or default_db_path().with_name("polylogue.duckdb"),
            read_only=config.read_only,
            memory_limit=config.memory_limit,
            busy_timeout=config.busy_timeout,
            migrate=migrate,
            sql_dir=config.sql_dir,
        )

    # -- connections ------------------------------------------------------------------

    def describe(self) -> str:
        where = f"duckdb://{self.db_path}" if self.db_path else "duckdb://:memory:"
        return f"{where} (read-only)" if self.read_only else where

    def _thread_cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise DatabaseError(f"{self.describe()} is closed")
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._errors("connect"):
                cursor = self._local.cursor = self._db.handle.cursor()
            with self._cursors_lock:
                self._cursors.append(cursor)
        return cursor

    def _acquire(self) -> duckdb.DuckDBPyConnection:
        return self._thread_cursor()

    def _release(self, conn: Any) -> None:
        self._drop_write_lock()

    def _take_write_lock(self, operation: str) -> None:
        """Wait for the file's write lock (not for read-only databases, which cannot write)."""
        if self.read_only or getattr(self._local, "writing", False):
            return
        if not self._db.write_lock.acquire(timeout=self.busy_timeout):
            raise OperationalError(
                f"{operation} failed on {self.describe()}: another thread's transaction held"
                f" the write lock for {self.busy_timeout:g}s (busy_timeout)"
            )
        try:
            self._db.prepare_wal()
        except OSError as exc:
            self._db.write_lock.release()
            raise OperationalError(
                f"{operation} failed on {self.describe()}: cannot create its .wal file:"
                f" {describe_os_error(exc)}; check that this user may write in its folder"
            ) from exc
        self._local.writing = True

    def _drop_write_lock(self) -> None:
        if getattr(self._local, "writing", False):
            self._local.writing = False
            self._db.write_lock.release()

    def close(self) -> None:
        """Close this backend's cursors; the last backend on a file closes the file."""
        if self._closed:
            return
        self._closed = True
        with self._cursors_lock:
            cursors, self._cursors = self._cursors, []
        self._local = threading.local()
        # Every cursor is closed and the file released even if one fails; the first
        # failure is raised.
        run_cleanups(
            None,
            *(("closing a cursor", cursor.close) for cursor in cursors),
            ("closing the database", lambda: release_database(self._db)),
        )

    # -- transactions: one level, a write lock, failures fail the whole transaction ---

    def _write_bundles(
        self,
        conn: Any,
        conversations: list[rows.Params],
        messages: list[rows.Params],
        records: list[AttachmentRecord],
        keep: dict[str, list[str]],
    ) -> tuple[int, int, int]:
        """One bundle that would change nothing writes nothing: a DuckDB statement costs
        milliseconds even when it changes no row, reads here cost far less
        (:mod:`~polylogue.storage.backends.duckdb.unchanged`; measured in
        docs/BENCHMARKS.md). Batches of several bundles (``save_many``) write as always."""
        if (
            len(conversations) == 1
            and len(messages) < SPLIT_UPSERT_ROWS
            and bundle_is_stored(self.queries, conn, conversations[0], messages, records, keep)
        ):
            return 0, 0, 0
        return super()._write_bundles(conn, conversations, messages, records, keep)

    def _begin_outer(self, conn: Any) -> None:
        self._take_write_lock("begin")
        super()._begin_outer(conn)

    def _rollback_outer(self, conn: Any) -> None:
        try:
            super()._rollback_outer(conn)
        except duckdb.TransactionException as exc:
            # A COMMIT that failed (disk full) has ended the transaction already; DuckDB
            # cannot be asked whether one is open.
            if NO_ACTIVE_TRANSACTION not in str(exc):
                raise

    def _begin_nested(self, conn: Any, depth: int) -> None:
        """No savepoints in DuckDB: an inner level only counts."""

    def _commit_nested(self, conn: Any, depth: int) -> None:
        """Nothing to release; the outermost commit() commits everything."""

    def _rollback_nested(self, conn: Any, depth: int) -> None:
        # Undo now (the caller asked for it), keep a transaction open so that statements
        # until the outer level ends cannot autocommit, and make the outer commit() fail.
        self._rollback_outer(conn)
        self._begin_outer(conn)
        self._state.mark_failed(
            1,
            "an inner transaction level was rolled back, and DuckDB (no savepoints) can only"
            " roll back the whole transaction",
        )

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            with super()._errors(operation):
                yield
        except DatabaseError as exc:
            # DuckDB aborts the whole transaction on any error (and would then take a
            # COMMIT as a silent rollback): fail it at the outermost level.
            state = self._state
            if state.depth:
                state.mark_failed(1, f"{operation} failed inside it ({exc})")
            raise

    def _translate(self, operation: str, exc: Exception) -> DatabaseError:
        if isinstance(exc, duckdb.InvalidInputException) and FOREIGN_KEY_VIOLATION in str(exc):
            return IntegrityError(f"{operation} failed on {self.describe()}: {exc}")
        if isinstance(exc, duckdb.OutOfMemoryException):
            # A single large value (a 50 MB text) needs several times its size at once.
            return OperationalError(
                f"{operation} failed on {self.describe()}: DuckDB ran out of memory"
                f" (memory_limit {self.memory_limit}); nothing of it was written: open the"
                " archive with a larger memory_limit (a text needs several times its size"
                " while it is written: a 50 MB one fails at 256MB and fits in 1GB)"
            )
        return super()._translate(operation, exc)

    def _hint(self, exc: Exception) -> str:
        return io_hint(str(exc))
