"""One DuckDB database handle per file per process, shared and reference-counted.

DuckDB allows a single process to open a file for writing; inside that process every
connection must come from the same database instance (``handle.cursor()``), or DuckDB
refuses the second open. Backends on the same file therefore share one
:class:`SharedDatabase`, which also owns the file's write lock: DuckDB's optimistic
concurrency makes two transactions that touch the same row fail at commit, so writers of
one file are serialised for the length of their transaction instead.

Owner-only files (the archive holds private text). DuckDB creates three things itself,
with mode 0666/0755 minus the umask, so each is made private before DuckDB makes it:

- the database file: DuckDB refuses an empty file, so a new one is created by DuckDB
  under :func:`~polylogue.storage.private_files.private_umask`, for the milliseconds of
  ``duckdb.connect``;
- the ``.wal`` (message text in clear): DuckDB deletes it at every checkpoint (every
  16 MiB of log, and on close) and creates it again, without truncating, at the next
  write. Writes happen only inside transactions, which take the write lock, so
  :meth:`SharedDatabase.prepare_wal` creates it empty with mode 0600 first, and DuckDB
  appends to that file (checked with strace: ``O_WRONLY|O_CREAT|O_APPEND``, no unlink
  before it). Holding a restrictive umask for whole transactions, which may last
  minutes, would change the mode of every file the application creates meanwhile;
- the spill folder (DuckDB's ``<file>.tmp``, made 0755 on the first spill): DuckDB is
  pointed at a folder of this open's own instead, made 0700 by ``mkdtemp`` beside the
  file (``<file>.tmp-XXXXXXXX``; in the system's temporary folder for an in-memory
  database, or when this user cannot write in the file's folder), and removed on
  close. A fixed name would be shared with other processes that try to open the file,
  and removing it on one's close could let DuckDB make it again 0755 under another.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from polylogue.errors import (
    ConfigurationError,
    DatabaseInUseError,
    DatabaseNotFoundError,
    OperationalError,
)
from polylogue.storage.faults import cleaning_up, describe_os_error, one_line
from polylogue.storage.private_files import (
    FILE_MODE,
    make_private_dirs,
    private_umask,
    restrict_if_owned,
)

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
    path: Path | None = None
    """The database file (None in memory)."""
    spill_folder: Path | None = None
    """The private folder DuckDB spills to, removed on close."""

    @property
    def wal_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".wal")

    def prepare_wal(self) -> None:
        """Before a write transaction: make sure the ``.wal`` DuckDB appends to is 0600.

        Called with the write lock held, so no checkpoint (which deletes the file) can
        run between this and DuckDB opening it.
        """
        wal = self.wal_path
        if wal is None or self.read_only:
            return
        try:
            fd = os.open(wal, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        except FileExistsError:
            restrict_if_owned(wal)  # left by a crash of an older version: take it back
            return
        os.close(fd)


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
        spill = _spill_folder(path, read_only=read_only, where=where)
        try:
            handle = _connect(
                path, read_only=read_only, memory_limit=memory_limit, spill=spill, where=where
            )
        except BaseException:
            shutil.rmtree(spill, ignore_errors=True)
            raise
        if path is not None and not read_only:
            _remove_stale_spill_folders(path, keep=spill)
        try:
            prepare(handle)
        except BaseException as exc:
            with cleaning_up(exc, "closing the database"):
                handle.close()
            shutil.rmtree(spill, ignore_errors=True)
            raise
        shared = _OPEN[key] = SharedDatabase(
            key, handle, read_only, memory_limit, path=path, spill_folder=spill
        )
        return shared


def release_database(shared: SharedDatabase) -> None:
    """One user fewer; the last one closes the handle."""
    with _OPEN_LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        _OPEN.pop(shared.key, None)
    shared.handle.close()
    # Tidy what DuckDB leaves of the private side files once nobody has the file open:
    # best effort, as these are empty (another process may reopen the file at once).
    wal = shared.wal_path
    if wal is not None and not shared.read_only:
        with suppress(OSError):
            if wal.stat().st_size == 0:
                wal.unlink()
    if shared.spill_folder is not None:
        shutil.rmtree(shared.spill_folder, ignore_errors=True)


def _spill_folder(path: Path | None, *, read_only: bool, where: str) -> Path:
    """A new folder, 0700 and this open's alone, for DuckDB's spill files (made 0700)."""
    if path is not None:
        if not read_only:
            try:
                make_private_dirs(path.parent)
            except OSError as exc:
                raise OperationalError(
                    f"open failed on {where}: cannot create its folder: {describe_os_error(exc)};"
                    " check that this user may create it"
                ) from exc
        try:
            return Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
        except OSError:
            pass  # a folder this user cannot write in (reading an archive): spill elsewhere
    return Path(tempfile.mkdtemp(prefix="polylogue-duckdb-"))


def _remove_stale_spill_folders(path: Path, *, keep: Path) -> None:
    """Remove the spill folders that killed processes left beside ``path``.

    Called once this process holds the file open for writing: DuckDB's lock then keeps
    every other process out, so no other folder ``<file>.tmp-*`` is in use.
    """
    prefix = f"{path.name}.tmp-"
    with suppress(OSError):
        for entry in path.parent.iterdir():
            if entry.name.startswith(prefix) and entry != keep:
                with suppress(OSError):
                    if entry.is_dir() and entry.stat().st_uid == os.geteuid():
                        shutil.rmtree(entry, ignore_errors=True)


def _connect(
    path: Path | None,
    *,
    read_only: bool,
    memory_limit: str | None,
    spill: Path,
    where: str,
) -> duckdb.DuckDBPyConnection:
    config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": str(spill)}
    if memory_limit:
        config["memory_limit"] = memory_limit
    if path is None:
        target = MEMORY
        created = False
    else:
        target = str(path)
        try:
            path.stat()
            exists = True
        except (FileNotFoundError, NotADirectoryError):
            exists = False
        except OSError as exc:
            raise OperationalError(
                f"open failed on {where}: {describe_os_error(exc)}; check that this user may"
                " enter every folder on the path"
            ) from exc
        if read_only and not exists:
            raise DatabaseNotFoundError(
                f"open failed on {where}: the file does not exist (a read-only open never"
                " creates one): check the path"
            )
        created = not exists and not read_only
    try:
        with private_umask() if created else nullcontext():
            handle = duckdb.connect(target, read_only=read_only, config=config)
    except (duckdb.InvalidInputException, duckdb.ParserException) as exc:
        # a setting DuckDB does not accept, such as memory_limit="lots"
        raise ConfigurationError(f"cannot open {where}: {one_line(str(exc))}") from None
    except duckdb.IOException as exc:
        raise _open_error(where, exc) from exc
    if created and path is not None:
        os.chmod(path, FILE_MODE)  # exactly 0600, should the umask have taken owner bits
    return handle


def _open_error(where: str, exc: duckdb.IOException) -> OperationalError:
    text = one_line(str(exc))
    held = _LOCK_HELD.search(text)
    if held is None:
        hint = io_hint(text)
        return OperationalError(f"open failed on {where}: {text}" + (f"; {hint}" if hint else ""))
    return DatabaseInUseError(
        f"{where} is in use by another process ({held['holder'].strip()}): DuckDB lets one"
        " process at a time open a database file for writing, and no other process may"
        " open it meanwhile, not even read-only. Close the other program or wait for it to"
        " finish."
    )


def io_hint(text: str) -> str:
    """What to do about a DuckDB error, from its message (DuckDB has no error codes), or ""."""
    if "No space left on device" in text:
        return (
            "the disk holding it is full: free some space and run it again; what failed"
            " was not written"
        )
    if "Permission denied" in text:
        return "check that this user may read and write the file and its folder"
    if "Is a directory" in text:
        return "the path is a folder: give the path of a database file"
    if "not a valid DuckDB database file" in text:
        return "check the path (or restore a backup, if this was the archive)"
    return ""
