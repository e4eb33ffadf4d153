"""SQLite, the embedded default: one connection per thread, WAL, savepoint nesting.

Connections run in autocommit mode (``isolation_level=None``) because the binding issues
its own ``BEGIN IMMEDIATE``/``SAVEPOINT``: taking the write lock at ``BEGIN`` means two
threads or processes writing at once wait for each other (``busy_timeout``) instead of
failing on a lock upgrade. New database files are created readable by their owner only.

``":memory:"`` becomes a named shared-cache in-memory database so that every thread sees
the same data. Shared-cache connections fail at once on a table lock instead of waiting,
so a memory database serialises its users with a lock held for a whole transaction.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

from aiosql.adapters.sqlite3 import SQLite3Adapter

from polylogue.errors import DatabaseError, MigrationError
from polylogue.storage.backends.base import SQLBackend
from polylogue.storage.migrate import iter_statements
from polylogue.storage.sqlfiles import QuerySpec

Synchronous = Literal["off", "normal", "full"]

MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT = 30.0


def sha256_hex(text: str | None) -> str | None:
    """SQL function ``sha256_hex(text)``: hex sha256 of the UTF-8 text (migration 0002)."""
    if text is None:
        return None
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()


def create_private_file(path: Path) -> None:
    """Create ``path`` (and its folders) with mode 0600 if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class RowAwareSQLite3Adapter(SQLite3Adapter):
    """aiosql's sqlite3 adapter, taught that ``$`` queries may return ``sqlite3.Row``."""

    def select_value(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        row = conn.execute(sql, parameters).fetchone()
        return None if row is None else row[0]


class SQLiteBackend(SQLBackend):
    """The archive in one SQLite file (or ``":memory:"``).

    ``synchronous`` is SQLite's durability setting (``"normal"`` by default: with WAL, a
    power loss may lose the last commits but never corrupts); ``busy_timeout`` is how many
    seconds a writer waits for another one. Migrations are applied when it opens unless
    ``migrate=False``.
    """

    dialect: ClassVar[str] = "sqlite"
    driver_adapter: ClassVar[type[RowAwareSQLite3Adapter]] = RowAwareSQLite3Adapter
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.IntegrityError,)
    operational_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.OperationalError,)
    begin_verb: ClassVar[str] = "BEGIN IMMEDIATE"
    dialect_queries: ClassVar[dict[str, QuerySpec]] = {
        "configure_connection": QuerySpec("connection.sql", (), "#"),
        "use_synchronous_normal": QuerySpec("connection.sql", (), "#"),
        "use_synchronous_full": QuerySpec("connection.sql", (), "#"),
        "use_synchronous_off": QuerySpec("connection.sql", (), "#"),
        "disable_foreign_keys": QuerySpec("connection.sql", (), "#"),
        "enable_foreign_keys": QuerySpec("connection.sql", (), "#"),
        "foreign_key_check": QuerySpec("connection.sql"),
    }

    synchronous: Synchronous
    busy_timeout: float
    db_path: Path | None
    """The database file; None for ``:memory:`` and borrowed connections."""
    _target: str
    _connections: list[sqlite3.Connection]
    _connections_lock: threading.Lock
    _borrowed: sqlite3.Connection | None
    _memory_lock: threading.RLock | None
    _keeper: sqlite3.Connection | None
    _closed: bool

    def __init__(
        self,
        db_path: str | os.PathLike[str] = MEMORY,
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrate: bool = True,
    ) -> None:
        self._prepare(synchronous, busy_timeout)
        if str(db_path) == MEMORY:
            self._target = f"file:polylogue-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._memory_lock = threading.RLock()
            self._keeper = self._connect()
        else:
            self.db_path = Path(db_path).expanduser().absolute()
            create_private_file(self.db_path)
            self._target = self.db_path.as_uri()
        if migrate:
            self._migrate_on_open()

    @classmethod
    def borrowing(cls, conn: sqlite3.Connection) -> SQLiteBackend:
        """A backend over a caller's open connection (the function API).

        It neither migrates nor closes ``conn``, and never commits the caller's work: its
        outermost level is a savepoint inside the caller's transaction (opened if needed).
        """
        backend = cls.__new__(cls)
        backend._prepare("normal", DEFAULT_BUSY_TIMEOUT, borrowed=conn)
        return backend

    def _prepare(
        self,
        synchronous: Synchronous,
        busy_timeout: float,
        borrowed: sqlite3.Connection | None = None,
    ) -> None:
        SQLBackend.__init__(self)
        if synchronous not in ("off", "normal", "full"):
            raise ValueError(f"synchronous must be 'off', 'normal' or 'full', not {synchronous!r}")
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.db_path = None
        self._target = "(borrowed connection)"
        self._connections = []
        self._connections_lock = threading.Lock()
        self._borrowed = borrowed
        self._memory_lock = None
        self._keeper = None
        self._closed = False

    # -- connections ------------------------------------------------------------------

    def describe(self) -> str:
        if self._borrowed is not None:
            return "sqlite (borrowed connection)"
        return f"sqlite://{self.db_path}" if self.db_path else "sqlite://:memory:"

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = connect(self._target, busy_timeout=self.busy_timeout, uri=True)
            self.queries.configure_connection(conn)
            getattr(self.queries, f"use_synchronous_{self.synchronous}")(conn)
        except sqlite3.Error as exc:
            raise self._translate("open", exc) from exc
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
        if self._borrowed is not None:
            return self._borrowed
        if self._closed:
            raise DatabaseError(f"{self.describe()} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _acquire(self) -> sqlite3.Connection:
        if self._memory_lock is not None:
            self._memory_lock.acquire()
        try:
            return self._thread_connection()
        except BaseException:
            if self._memory_lock is not None:
                self._memory_lock.release()
            raise

    def _release(self, conn: Any) -> None:
        if self._memory_lock is not None:
            self._memory_lock.release()

    def _begin_outer(self, conn: Any) -> None:
        if self._borrowed is None:
            super()._begin_outer(conn)
            return
        # The caller owns the transaction: never commit it, nest inside it.
        if not conn.in_transaction:
            conn.execute("BEGIN")
        conn.execute("SAVEPOINT polylogue_call")

    def _commit_outer(self, conn: Any) -> None:
        if self._borrowed is None:
            super()._commit_outer(conn)
        else:
            conn.execute("RELEASE SAVEPOINT polylogue_call")

    def _rollback_outer(self, conn: Any) -> None:
        if self._borrowed is None:
            super()._rollback_outer(conn)
        else:
            conn.execute("ROLLBACK TO SAVEPOINT polylogue_call")
            conn.execute("RELEASE SAVEPOINT polylogue_call")

    def schema_version(self) -> int:
        with self._reading("schema_version") as conn:
            return read_user_version(conn)

    def migration_target(self) -> SQLiteMigrationTarget:
        return SQLiteMigrationTarget(self)

    def close(self) -> None:
        """Close every connection this backend opened (a borrowed one stays open)."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            if conn is not self._keeper:
                conn.close()
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
        self._local = threading.local()


def connect(
    target: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, uri: bool = False
) -> sqlite3.Connection:
    """A raw connection in autocommit mode with ``sha256_hex`` and named rows."""
    conn = sqlite3.connect(
        target,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
        uri=uri,
    )
    conn.row_factory = sqlite3.Row
    conn.create_function("sha256_hex", 1, sha256_hex, deterministic=True)
    return conn


def read_user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


class SQLiteMigrationTarget:
    """How the runner migrates SQLite: ``BEGIN IMMEDIATE`` is the lock, and the version
    is ``PRAGMA user_version`` (written inside the script's transaction)."""

    dialect = "sqlite"

    def __init__(self, backend: SQLiteBackend) -> None:
        self.backend = backend
        self.queries = backend.queries

    @contextmanager
    def migration_connection(self) -> Iterator[sqlite3.Connection]:
        backend = self.backend
        if backend.in_transaction:
            raise MigrationError("cannot migrate inside an open transaction")
        conn = backend._acquire()
        # Table rebuilds need foreign keys off, which only takes effect outside a
        # transaction; each script's foreign_key_check stands in for them.
        borrowed_mode = conn.isolation_level
        try:
            with backend._errors("migrate"):
                if conn.in_transaction:
                    raise MigrationError("cannot migrate a connection with a transaction open")
                conn.isolation_level = None
                self.queries.disable_foreign_keys(conn)
            try:
                yield conn
            finally:
                with backend._errors("migrate"):
                    self.queries.enable_foreign_keys(conn)
                    conn.isolation_level = borrowed_mode
        finally:
            backend._release(conn)

    def begin_locked(self, conn: sqlite3.Connection) -> None:
        with self.backend._errors("migrate (begin)"):
            conn.execute("BEGIN IMMEDIATE")

    def commit(self, conn: sqlite3.Connection) -> None:
        with self.backend._errors("migrate (commit)"):
            conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with self.backend._errors("migrate (rollback)"):
                conn.execute("ROLLBACK")

    def read_version(self, conn: sqlite3.Connection) -> int:
        with self.backend._errors("read schema version"):
            return read_user_version(conn)

    def write_version(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def run_script(self, conn: sqlite3.Connection, sql: str) -> None:
        for statement in iter_statements(sql, sqlite3.complete_statement):
            conn.execute(statement)

    def check_before_commit(self, conn: sqlite3.Connection) -> None:
        broken = [tuple(row) for row in self.queries.foreign_key_check(conn)]
        if broken:
            raise MigrationError(
                f"foreign key check failed after the script: {len(broken)} rows, first"
                f" {broken[:5]} (table, rowid, parent, fkid)"
            )

    def session_lock(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        raise MigrationError(
            "SQLite migrations always run in a transaction; remove the no-transaction marker"
        )

    def run_script_outside_transaction(self, conn: sqlite3.Connection, sql: str) -> None:
        raise MigrationError("SQLite migrations always run in a transaction")
