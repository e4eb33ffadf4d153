"""Opening a SQLite connection the way every part of the kit needs it: autocommit (the
binding issues its own verbs), named rows, ``sha256_hex`` for migration 0002, and the
per-connection settings of ``connection.sql``.

Shared by :class:`~polylogue.storage.backends.sqlite.backend.SQLiteBackend`, the function
API's plain connections (:mod:`polylogue.storage.db`) and its borrowed ones
(:mod:`polylogue.storage.borrowed`).
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
from typing import Any, Literal

from polylogue.storage.migrate import read_user_version
from polylogue.storage.migration_scripts import discover

Synchronous = Literal["off", "normal", "full"]

MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT = 30.0


def sha256_hex(text: str | None) -> str | None:
    """SQL function ``sha256_hex(text)``: hex sha256 of the UTF-8 text (migration 0002)."""
    if text is None:
        return None
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()


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


@functools.cache
def newest_schema_version() -> int:
    """The schema version the packaged SQLite migrations end at."""
    return discover("sqlite")[-1].version


def prepare_connection(
    conn: sqlite3.Connection, queries: Any, synchronous: Synchronous, *, read_only: bool = False
) -> None:
    """Foreign keys, durability and WAL for a new connection.

    WAL is recorded in the file's header; a database newer than this code (to be refused
    by the migration runner) is left in the journal mode it has, so refusing it changes
    nothing in the file. A read-only connection changes nothing either.
    """
    queries.configure_connection(conn)
    getattr(queries, f"use_synchronous_{synchronous}")(conn)
    if not read_only and read_user_version(conn) <= newest_schema_version():
        queries.use_wal(conn)
