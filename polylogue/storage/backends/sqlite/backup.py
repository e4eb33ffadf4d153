"""SQLite backups written before migrating an archive: one self-contained, private file.

Before the runner changes an archive that holds data, it copies the file beside itself
with SQLite's online backup API (``<name>.pre-v<N>-<UTC time>.bak``, mode 0600, N being
the version the migration is about to reach). The copy is written as ``.partial`` and
renamed when complete, so a process killed while copying never leaves a file that looks
like a finished backup; the next backup removes such leftovers.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polylogue.storage.faults import cleaning_up
from polylogue.storage.private_files import create_private_file

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


def write_backup_file(source: Path, reaching: int, queries: Any, *, busy_timeout: float) -> Path:
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


def copy_database(source: Path, destination: Path, queries: Any, *, busy_timeout: float) -> None:
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
