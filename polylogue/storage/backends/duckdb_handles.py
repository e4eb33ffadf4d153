"""One DuckDB database handle per file per process, shared and reference-counted.

DuckDB allows a single process to open a file for writing; inside that process every
connection must come from the same database instance (``handle.cursor()``), or DuckDB
refuses the second open. Backends on the same file therefore share one
:class:`SharedDatabase`, which also owns the file's write lock: DuckDB's optimistic
concurrency makes two transactions that touch the same row fail at commit, so writers of
one file are serialised for the length of their transaction instead.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from polylogue.errors import ConfigurationError, DatabaseInUseError, OperationalError

MEMORY = ":memory:"
_LOCK_HELD = re.compile(r"Conflicting lock is held in (?P<holder>.+?)(?:\. See also|$)")


@dataclass(eq=False)
class SharedDatabase:
    """An open DuckDB database, the settings it was opened with, and its users."""

    key: str
    handle: duckdb.DuckDBPyConnection
    read_only: bool
    memory_limit: str | None
    users: int = 1
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    """Held by the thread whose transaction may write, from BEGIN to COMMIT/ROLLBACK."""


_OPEN: dict[str, SharedDatabase] = {}
_OPEN_LOCK = threading.Lock()


def open_database(
    path: Path | None,
    *,
    read_only: bool,
    memory_limit: str | None,
    where: str,
    prepare: Callable[[duckdb.DuckDBPyConnection], Any],
) -> SharedDatabase:
    """The shared database for ``path`` (None: a new private in-memory one).

    ``prepare`` runs once on a newly opened handle (session settings). A file already open
    in this process with other settings is refused: DuckDB cannot hold two instances.
    """
    with _OPEN_LOCK:
        # The resolved path: two spellings of one file (a symlink, "..") are one database.
        key = f"{MEMORY}{uuid.uuid4().hex}" if path is None else str(path.resolve())
        shared = _OPEN.get(key)
        if shared is not None:
            if (shared.read_only, shared.memory_limit) != (read_only, memory_limit):
                raise ConfigurationError(
                    f"{where} is already open in this process with read_only="
                    f"{shared.read_only}, memory_limit={shared.memory_limit!r}; DuckDB opens a"
                    " file once per process, so every backend on it must use the same settings"
                )
            shared.users += 1
            return shared
        handle = _connect(path, read_only=read_only, memory_limit=memory_limit, where=where)
        try:
            prepare(handle)
        except BaseException:
            handle.close()
            raise
        shared = _OPEN[key] = SharedDatabase(key, handle, read_only, memory_limit)
        return shared


def release_database(shared: SharedDatabase) -> None:
    """One user fewer; the last one closes the handle."""
    with _OPEN_LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        _OPEN.pop(shared.key, None)
    shared.handle.close()


def _connect(
    path: Path | None, *, read_only: bool, memory_limit: str | None, where: str
) -> duckdb.DuckDBPyConnection:
    config: dict[str, str | bool | int | float | list[str]] = (
        {"memory_limit": memory_limit} if memory_limit else {}
    )
    if path is None:
        target = MEMORY
        created = False
    else:
        target = str(path)
        created = not read_only and not path.exists()
        if created:
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = duckdb.connect(target, read_only=read_only, config=config)
    except (duckdb.InvalidInputException, duckdb.ParserException) as exc:
        # a setting DuckDB does not accept, such as memory_limit="lots"
        raise ConfigurationError(f"cannot open {where}: {exc}") from None
    except duckdb.IOException as exc:
        raise _open_error(where, exc) from exc
    if created and path is not None:
        # Chat archives are private: a new file is readable by its owner only.
        os.chmod(path, 0o600)
    return handle


def _open_error(where: str, exc: duckdb.IOException) -> OperationalError:
    text = str(exc)
    held = _LOCK_HELD.search(text)
    if held is None:
        return OperationalError(f"open failed on {where}: {text}")
    return DatabaseInUseError(
        f"{where} is in use by another process ({held['holder'].strip()}): DuckDB lets one"
        " process at a time open a database file for writing, and no other process may"
        " open it meanwhile, not even read-only. Close the other program or wait for it to"
        " finish."
    )
