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

import functools
import hashlib
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from aiosql.adapters.sqlite3 import SQLite3Adapter

from polylogue.errors import DatabaseError, MigrationError, OperationalError
from polylogue.storage.backends.base import SQLBackend
from polylogue.storage.batches import Params
from polylogue.storage.faults import cleaning_up, describe_os_error, one_line, run_cleanups
from polylogue.storage.migrate import discover, iter_statements
from polylogue.storage.private_files import create_private_file as create_private_file
from polylogue.storage.sqlfiles import QuerySpec

Synchronous = Literal["off", "normal", "full"]

MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT = 30.0


def sha256_hex(text: str | None) -> str | None:
    """SQL function ``sha256_hex(text)``: hex sha256 of the UTF-8 text (migration 0002)."""
    if text is None:
        return None
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()


_UNDECODABLE = re.compile(r"Could not decode to UTF-8 column '(?P<column>[^']*)'")
"""sqlite3's message for invalid UTF-8 in a text column; it goes on to quote the text."""


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
    ``migrate=False``; before migrating a file that holds a schema it writes a backup
    beside it (``<name>.pre-v<N>-<UTC time>.bak``) unless ``backup=False``.
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
        "use_wal": QuerySpec("connection.sql", (), "#"),
        "use_rollback_journal": QuerySpec("connection.sql", (), "#"),
        "database_file": QuerySpec("connection.sql", (), "$"),
        "quick_check": QuerySpec("connection.sql"),
        "get_message_owner": QuerySpec("messages.sql", ("message_id",), "$"),
    }

    synchronous: Synchronous
    busy_timeout: float
    backup: bool
    """Write a backup before migrating a database that holds a schema (default True)."""
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
        backup: bool = True,
    ) -> None:
        self._prepare(synchronous, busy_timeout)
        self.backup = backup
        if str(db_path) == MEMORY:
            self._target = f"file:polylogue-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._memory_lock = threading.RLock()
            self._keeper = self._connect()
        else:
            self.db_path = Path(db_path).expanduser().absolute()
            try:
                create_private_file(self.db_path)
            except OSError as exc:
                raise OperationalError(
                    f"open failed on {self.describe()}: cannot create it:"
                    f" {describe_os_error(exc)}; check that this user may create files there"
                ) from exc
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
        self.backup = True
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
            prepare_connection(conn, self.queries, self.synchronous)
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
            if conn.in_transaction:  # a COMMIT that failed (disk full) has rolled back
                super()._rollback_outer(conn)
        else:
            conn.execute("ROLLBACK TO SAVEPOINT polylogue_call")
            conn.execute("RELEASE SAVEPOINT polylogue_call")

    def _translate(self, operation: str, exc: Exception) -> DatabaseError:
        undecodable = _UNDECODABLE.match(str(exc))
        if undecodable is not None:
            # sqlite3 quotes the stored text, which is private and may be megabytes long.
            return DatabaseError(
                f"{operation} failed on {self.describe()}: column"
                f" {undecodable['column']!r} holds bytes that are not UTF-8 text; the file"
                " was damaged or written by another program: check it with"
                " PRAGMA integrity_check, or restore a backup"
            )
        return super()._translate(operation, exc)

    def _hint(self, exc: Exception) -> str:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            return ""
        primary = code & 0xFF
        if primary == sqlite3.SQLITE_FULL:
            return (
                "the disk holding it is full (or the database reached its size limit): free"
                " some space and run it again; what failed was not written"
            )
        if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            problem = path_problem(self.db_path) if self.db_path else ""
            return problem or (
                "check that the path names a database file and that this user may read and"
                " write it and its folder"
            )
        if primary == sqlite3.SQLITE_NOTADB:
            return "it is not a SQLite database (or it is damaged): check the path"
        if primary == sqlite3.SQLITE_CORRUPT:
            return "the file is damaged: check it with PRAGMA integrity_check, or restore a backup"
        return ""

    def _write_messages(self, conn: Any, params: list[Params]) -> tuple[int, list[Params]]:
        """The upsert refuses a message of another conversation itself (NOT NULL, see
        sql/sqlite/messages.sql); this names the owners then. Other failures pass."""
        try:
            return super()._write_messages(conn, params)
        except sqlite3.IntegrityError:
            # After a constraint error SQLite keeps the transaction usable: look.
            found: list[Params] = []
            for row in params:
                owner = self.queries.get_message_owner(conn, message_id=row["message_id"])
                if owner is not None and owner != row["conversation_id"]:
                    claimant = row["conversation_id"]
                    found.append(
                        {"message_id": row["message_id"], "owner": owner, "claimant": claimant}
                    )
            if not found:
                raise
            return 0, found

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
        keeper, self._keeper = self._keeper, None
        self._local = threading.local()
        # Every connection is closed even if one fails; the first failure is raised.
        run_cleanups(
            None,
            *(("closing a connection", conn.close) for conn in connections if conn is not keeper),
            *((("closing the memory database", keeper.close),) if keeper is not None else ()),
        )


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


def path_problem(path: Path) -> str:
    """Why this user cannot read and write the database at ``path``, or "" if not seen.

    SQLite says only "unable to open database file" or "readonly database"; the file
    system can say which of path, folder or mount is the cause.
    """
    folder = path.parent
    try:
        if path.is_dir():
            return f"{path} is a folder, not a database file"
        if not os.access(folder, os.X_OK):
            return f"this user may not enter the folder {folder}"
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"the file system holding {folder} is mounted read-only"
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            return f"this user may not read and write {path} (check its owner and mode)"
        if not os.access(folder, os.W_OK):
            return (
                f"this user may not write in the folder {folder}, where SQLite keeps the"
                " -wal and -shm files beside the database"
            )
    except OSError as exc:
        return describe_os_error(exc)
    return ""


def read_user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


@functools.cache
def newest_schema_version() -> int:
    """The schema version the packaged SQLite migrations end at."""
    return discover("sqlite")[-1].version


def prepare_connection(conn: sqlite3.Connection, queries: Any, synchronous: Synchronous) -> None:
    """Foreign keys, durability and WAL for a new connection.

    WAL is recorded in the file's header; a database newer than this code (to be refused
    by the migration runner) is left in the journal mode it has, so refusing it changes
    nothing in the file.
    """
    queries.configure_connection(conn)
    getattr(queries, f"use_synchronous_{synchronous}")(conn)
    if read_user_version(conn) <= newest_schema_version():
        queries.use_wal(conn)


BACKUP_SUFFIX = ".bak"
UNFINISHED_SUFFIX = ".partial"


def backup_name(database: Path, reaching: int, when: datetime, attempt: int = 1) -> Path:
    """``<name>.pre-v<N>-<UTC time>.bak`` beside ``database`` (``-2``, ``-3``, ... before
    ``.bak`` when that name is taken).

    N is the version the migration is about to bring the database to; the copy holds the
    version it had before.
    """
    stem = f"{database.name}.pre-v{reaching}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    suffix = BACKUP_SUFFIX if attempt == 1 else f"-{attempt}{BACKUP_SUFFIX}"
    return database.with_name(stem + suffix)


def write_backup_file(
    source: Path, reaching: int, queries: Any, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> Path:
    """Copy the database ``source`` beside itself (0600) and return the copy's path.

    The copy is written under ``<backup name>.partial`` and renamed when complete, so a
    process killed while copying never leaves a file that looks like a finished backup.
    A copy that fails (disk full) is removed; the error is raised.
    """
    remove_unfinished_backups(source)
    when = datetime.now(UTC)
    attempt = 1
    while True:
        path = backup_name(source, reaching, when, attempt)
        partial = Path(f"{path}{UNFINISHED_SUFFIX}")
        if not path.exists() and create_private_file(partial):
            break
        attempt += 1
    try:
        copy_database(source, partial, queries, busy_timeout=busy_timeout)
        os.replace(partial, path)
    except BaseException as exc:
        with cleaning_up(exc, f"removing the unfinished backup {partial}"):
            for leftover in ("", "-journal", "-wal", "-shm"):
                Path(f"{partial}{leftover}").unlink(missing_ok=True)
        raise
    return path


def remove_unfinished_backups(database: Path) -> None:
    """Remove the ``.partial`` copies (and their journals) that a process killed while
    backing ``database`` up left beside it.

    Called under the migration lock, which every backup writer holds: none of them is
    being written now.
    """
    prefix = f"{database.name}.pre-v"
    for entry in database.parent.iterdir():
        name = entry.name
        if name.startswith(prefix) and UNFINISHED_SUFFIX in name[len(prefix) :]:
            entry.unlink(missing_ok=True)


def copy_database(
    source: Path, destination: Path, queries: Any, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> None:
    """Copy ``source`` into the empty file ``destination`` with SQLite's online backup API.

    The copy is read through a connection of its own: the backup API cannot read through
    a connection that holds a write transaction (it reports "locked" forever), and the
    migrating connection holds one. The copy is switched to a rollback journal, so it is
    one self-contained file; SQLite syncs it to disk when the copy commits.
    """
    reader = sqlite3.connect(
        f"{source.as_uri()}?mode=ro", uri=True, timeout=busy_timeout, isolation_level=None
    )
    try:
        copy = sqlite3.connect(destination, isolation_level=None)
        try:
            reader.backup(copy)
            queries.use_rollback_journal(copy)
        finally:
            copy.close()
    finally:
        reader.close()


class SQLiteMigrationTarget:
    """How the runner migrates SQLite: ``BEGIN IMMEDIATE`` is the lock, and the version
    is ``PRAGMA user_version`` (written inside the script's transaction). Before the first
    script it writes a backup of a file database (:meth:`write_backup`); before each
    commit it runs ``foreign_key_check`` and ``quick_check`` on the script's result."""

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
        cause: BaseException | None = None
        try:
            with backend._errors("migrate"):
                if conn.in_transaction:
                    raise MigrationError("cannot migrate a connection with a transaction open")
                conn.isolation_level = None
                self.queries.disable_foreign_keys(conn)
            try:
                yield conn
            except BaseException as exc:
                cause = exc
                raise
            finally:
                with cleaning_up(cause, "turning foreign keys back on"), backend._errors("migrate"):
                    self.queries.enable_foreign_keys(conn)
                    conn.isolation_level = borrowed_mode
        except BaseException as exc:
            with cleaning_up(exc, "giving the connection back"):
                backend._release(conn)
            raise
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
        # Sees the script's uncommitted pages: a damaged file or a NOT NULL/CHECK
        # violation is found before anything is committed, not by the next reader.
        problems = [str(row["problem"]) for row in self.queries.quick_check(conn)]
        if problems != ["ok"]:
            raise MigrationError(
                f"quick_check failed after the script: {len(problems)} problems, first"
                f" {problems[:3]}"
            )

    def write_backup(self, conn: sqlite3.Connection, version: int, reaching: int) -> Path | None:
        """Copy the database file beside itself before the runner migrates it (0600).

        None for an in-memory database and for a backend opened with ``backup=False``.
        A copy that cannot be finished (disk full) is removed, and the error says why.
        """
        if not self.backend.backup:
            return None
        with self.backend._errors("find the database file to back up"):
            name = self.queries.database_file(conn)
        if not name:
            return None
        source = Path(name)
        try:
            return write_backup_file(
                source, reaching, self.queries, busy_timeout=self.backend.busy_timeout
            )
        except (sqlite3.Error, OSError) as exc:
            reason = describe_os_error(exc) if isinstance(exc, OSError) else one_line(str(exc))
            raise OperationalError(
                f"writing a backup of {source} (version {version}) beside it failed: {reason}"
            ) from exc

    def session_lock(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        raise MigrationError(
            "SQLite migrations always run in a transaction; remove the no-transaction marker"
        )

    def run_script_outside_transaction(self, conn: sqlite3.Connection, sql: str) -> None:
        raise MigrationError("SQLite migrations always run in a transaction")
