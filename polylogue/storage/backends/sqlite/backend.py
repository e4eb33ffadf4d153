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

import os
import re
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from aiosql.adapters.sqlite3 import SQLite3Adapter
from aiosql.types import SQLOperationType

from polylogue.errors import DatabaseError, DatabaseNotFoundError, MigrationError, OperationalError
from polylogue.storage.backends.base import SQLBackend
from polylogue.storage.backends.sqlite.backup import write_backup_file
from polylogue.storage.backends.sqlite.connection import (
    DEFAULT_BUSY_TIMEOUT,
    MEMORY,
    Synchronous,
    connect,
    prepare_connection,
)
from polylogue.storage.batches import Params
from polylogue.storage.faults import (
    cleaning_up,
    describe_os_error,
    one_line,
    path_problem,
    run_cleanups,
)
from polylogue.storage.migration_scripts import iter_statements
from polylogue.storage.private_files import create_private_file
from polylogue.storage.rows import dump_json
from polylogue.storage.sqlfiles import QuerySpec

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
    beside it (``<name>.pre-v<N>-<UTC time>.bak``) unless ``backup=False``. ``sql_dir``
    names an override folder of queries (default ``$POLYLOGUE_SQL_DIR``, else the
    packaged ones; see :mod:`polylogue.storage.sqlfiles`).
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
    """The database file; None for ``:memory:`` (and for a caller's connection)."""
    _target: str
    _connections: list[sqlite3.Connection]
    _connections_lock: threading.Lock
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
        read_only: bool = False,
        sql_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._prepare(synchronous, busy_timeout, sql_dir)
        self.backup = backup
        self.read_only = read_only
        if str(db_path) == MEMORY and read_only:
            raise DatabaseError("a read-only SQLite database needs a file, not :memory:")
        if read_only:
            self.db_path = Path(db_path).expanduser().absolute()
            self._target = self._read_only_target()
        elif str(db_path) == MEMORY:
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

    def _prepare(
        self,
        synchronous: Synchronous,
        busy_timeout: float,
        sql_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """The state every instance has; where its connections come from is set after
        (by ``__init__``, or by the function API's subclass over a caller's connection,
        which thus follows ``$POLYLOGUE_SQL_DIR`` too)."""
        SQLBackend.__init__(self, sql_dir)
        if synchronous not in ("off", "normal", "full"):
            raise ValueError(f"synchronous must be 'off', 'normal' or 'full', not {synchronous!r}")
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.backup = True
        self.db_path = None
        self._target = ""
        self._connections = []
        self._connections_lock = threading.Lock()
        self._memory_lock = None
        self._keeper = None
        self._closed = False

    # -- connections ------------------------------------------------------------------

    def describe(self) -> str:
        where = f"sqlite://{self.db_path}" if self.db_path else "sqlite://:memory:"
        return f"{where} (read-only)" if self.read_only else where

    def _read_only_target(self) -> str:
        """The URI that opens the file without writing it, or a clear error when there is
        no file: a read-only open never creates one.

        ``mode=ro`` still needs the ``-shm`` file of a WAL database, which SQLite creates
        when it is missing: in a folder this user may not write (a 0444 archive in a 0555
        folder) that fails, and the file is opened ``immutable`` instead, which is safe
        because nobody who cannot write the folder can be changing the database either.
        """
        assert self.db_path is not None
        path = self.db_path
        try:
            found = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise DatabaseNotFoundError(
                f"open failed on {self.describe()}: the file does not exist (a read-only"
                " open never creates one): check the path"
            ) from None
        except OSError as exc:
            problem = path_problem(path) or "check that this user may read it and its folder"
            raise OperationalError(
                f"open failed on {self.describe()}: {describe_os_error(exc)}; {problem}"
            ) from exc
        if stat.S_ISDIR(found.st_mode):
            raise OperationalError(
                f"open failed on {self.describe()}: it is a folder, not a database file:"
                " give the path of a database file"
            )
        writable = os.access(path.parent, os.W_OK)
        return path.as_uri() + ("?mode=ro" if writable else "?mode=ro&immutable=1")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = connect(self._target, busy_timeout=self.busy_timeout, uri=True)
            prepare_connection(conn, self.queries, self.synchronous, read_only=self.read_only)
        except sqlite3.Error as exc:
            raise self._translate("open", exc) from exc
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
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

    def _rollback_outer(self, conn: Any) -> None:
        if conn.in_transaction:  # a COMMIT that failed (disk full) has rolled back
            super()._rollback_outer(conn)

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
        if primary == sqlite3.SQLITE_READONLY and self.read_only:
            return "it was opened read-only: open it without read_only to write to it"
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

    def _write_rows(self, conn: Any, query_name: str, params: list[Params]) -> int:
        """A per-row (``*!``) query straight on the connection, one row with ``execute``:
        aiosql's call, cursor and close cost 0.5-1 us of a 6 us one-row upsert (measured),
        and a bundle runs four to six of these."""
        query = getattr(self.queries, query_name)
        if query.operation is not SQLOperationType.INSERT_UPDATE_DELETE_MANY:
            return super()._write_rows(conn, query_name, params)
        if len(params) == 1:
            changed: int = conn.execute(query.sql, params[0]).rowcount
        else:
            changed = conn.executemany(query.sql, params).rowcount
        return max(changed, 0)

    def _delete_refs(self, conn: Any, keep: dict[str, list[str]]) -> list[tuple[str, str]]:
        """The shared prune, one ``prune_attachment_refs`` per conversation (SQLite binds
        no lists, see ``attachments.sql``), straight on the connection like
        :meth:`_write_rows`: 3.7 instead of 4.7 us a conversation (measured), and every
        bundle runs one."""
        sql = self.queries.prune_attachment_refs.sql
        return [
            (row["ref_id"], row["attachment_id"])
            for cid, ref_ids in keep.items()
            for row in conn.execute(
                sql, {"conversation_id": cid, "keep_ref_ids": dump_json(ref_ids)}
            ).fetchall()
        ]

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

    # -- migrations: the two hooks the runner cannot express as queries ---------------

    @contextmanager
    def migration_connection(self) -> Iterator[sqlite3.Connection]:
        """The base's connection, with foreign keys off for the run: table rebuilds need
        them off, which only takes effect outside a transaction; each script's
        ``foreign_key_check`` stands in for them. A connection in Python's implicit-
        transaction mode (a caller's, see :mod:`polylogue.storage.borrowed`) is switched
        to autocommit for the run, since the runner issues its own verbs."""
        with super().migration_connection() as conn:
            borrowed_mode = conn.isolation_level
            cause: BaseException | None = None
            with self._errors("migrate"):
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
                with cleaning_up(cause, "turning foreign keys back on"), self._errors("migrate"):
                    self.queries.enable_foreign_keys(conn)
                    conn.isolation_level = borrowed_mode

    def migration_statements(self, sql: str) -> Iterable[str]:
        """One statement at a time: sqlite3's ``execute`` runs only one."""
        return iter_statements(sql, sqlite3.complete_statement)

    def write_migration_backup(
        self, conn: sqlite3.Connection, version: int, reaching: int
    ) -> Path | None:
        """Copy the database file beside itself before the runner migrates it (0600).

        None for an in-memory database and for a backend opened with ``backup=False``.
        A copy that cannot be finished (disk full) is removed, and the error says why.
        """
        if not self.backup:
            return None
        with self._errors("find the database file to back up"):
            name = self.queries.database_file(conn)
        if not name:
            return None
        source = Path(name)
        try:
            return write_backup_file(source, reaching, self.queries, busy_timeout=self.busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            reason = describe_os_error(exc) if isinstance(exc, OSError) else one_line(str(exc))
            raise OperationalError(
                f"writing a backup of {source} (version {version}) beside it failed: {reason}"
            ) from exc

    def close(self) -> None:
        """Close every connection this backend opened (a caller's one stays open)."""
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
