"""The connection functions existing callers use, kept working on the new SQLite layer.

``open_connection()`` hands out a plain :class:`sqlite3.Connection` (rows are
:class:`sqlite3.Row`), migrated on open, in Python's usual implicit-transaction mode: the
work done inside the outermost ``with`` is committed when it exits normally, rolled back
when it raises. Nested ``open_connection()`` calls in the same thread reuse that connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from polylogue.errors import DatabaseError, OperationalError
from polylogue.storage.backends.config import default_db_path
from polylogue.storage.backends.sqlite.connection import (
    DEFAULT_BUSY_TIMEOUT,
    connect,
    newest_schema_version,
)
from polylogue.storage.borrowed import BorrowedSQLiteBackend
from polylogue.storage.faults import cleaning_up, describe_os_error, run_cleanups
from polylogue.storage.private_files import create_private_file

if TYPE_CHECKING:
    SCHEMA_VERSION: int
    """The schema version this code migrates SQLite databases to."""


def __getattr__(name: str) -> int:
    # SCHEMA_VERSION reads migrations/sqlite on first use, not on import: a bad script
    # there must fail only what needs SQLite's migrations (as a MigrationError naming it).
    if name == "SCHEMA_VERSION":
        return newest_schema_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"SCHEMA_VERSION"})


class _OpenConnection:
    __slots__ = ("conn", "depth", "path")

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.depth = 1


_local = threading.local()


def _resolve(db_path: str | os.PathLike[str] | None) -> Path:
    return Path(db_path if db_path is not None else default_db_path()).expanduser().absolute()


def _open(path: Path) -> sqlite3.Connection:
    try:
        create_private_file(path)
    except OSError as exc:
        raise OperationalError(
            f"cannot create {path}: {describe_os_error(exc)}; check that this user may create"
            " files there"
        ) from exc
    try:
        conn = connect(str(path), busy_timeout=DEFAULT_BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from exc
    try:
        backend = BorrowedSQLiteBackend(conn)
        backend.configure_connection(f"open {path}")
        conn.isolation_level = "DEFERRED"
        backend.migration_runner().migrate()
    except BaseException as exc:
        with cleaning_up(exc, "closing the connection"):
            conn.close()
        raise
    return conn


@contextmanager
def open_connection(db_path: str | os.PathLike[str] | None = None) -> Iterator[sqlite3.Connection]:
    """A migrated connection to ``db_path`` (default: :func:`default_db_path`).

    Inside an open one in the same thread, returns the same connection; asking for a
    different file there raises ``DatabaseError("Existing connection opened for ...")``.
    """
    current: _OpenConnection | None = getattr(_local, "current", None)
    if current is not None:
        if db_path is not None and _resolve(db_path) != current.path:
            raise DatabaseError(
                f"Existing connection opened for {current.path}; cannot open {_resolve(db_path)}"
                " in the same thread until it is closed"
            )
        current.depth += 1
        try:
            yield current.conn
        finally:
            current.depth -= 1
        return
    path = _resolve(db_path)
    conn = _open(path)
    _local.current = _OpenConnection(conn, path)
    try:
        yield conn
    except BaseException as exc:
        _local.current = None
        # The caller's error is the one raised; a failed cleanup is a note on it.
        run_cleanups(exc, ("the rollback", conn.rollback), ("closing the connection", conn.close))
        raise
    _local.current = None
    try:
        conn.commit()
    except sqlite3.Error as exc:
        failed = DatabaseError(f"commit failed on {path}: {exc}")
        run_cleanups(failed, ("closing the connection", conn.close))
        raise failed from exc
    conn.close()


@contextmanager
def connection_context(
    conn: sqlite3.Connection | None = None, db_path: str | os.PathLike[str] | None = None
) -> Iterator[sqlite3.Connection]:
    """Use ``conn`` as it is (its owner commits), or open one as :func:`open_connection`."""
    if conn is not None:
        yield conn
        return
    with open_connection(db_path) as opened:
        yield opened


__all__ = [
    "SCHEMA_VERSION",
    "DatabaseError",
    "connection_context",
    "default_db_path",
    "open_connection",
]
