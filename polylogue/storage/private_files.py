"""Files and folders only their owner can read: an archive holds private conversations.

Everything the kit creates is owner-only whatever the umask: files 0600, folders 0700,
from the moment they exist. The umask can only take permission bits away, so a file
opened with mode 0600 (or a folder made with 0700) is never readable by others, even for
an instant; a ``chmod`` afterwards would leave a window. Files a driver creates itself
(DuckDB's database file) are created under :func:`private_umask`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each 0700; existing ones are kept as they are.

    (``Path.mkdir(parents=True)`` would create the parents with the umask's default mode.)
    """
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, FOLDER_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: not ours to change
        # Exactly 0700 even under a umask that took owner bits away; never more than 0700.
        os.chmod(path, FOLDER_MODE)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 (and its folders 0700) unless it exists.

    Returns whether it was created.
    """
    make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def restrict_if_owned(path: Path) -> None:
    """Take group and other permissions off an existing file or folder this user owns.

    For side files that an older version (or another program) left readable.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        os.chmod(path, info.st_mode & 0o700)


_umask_lock = threading.Lock()
_umask_users = 0
_umask_saved = 0


@contextmanager
def private_umask() -> Iterator[None]:
    """While inside, files and folders this process creates get no group or other bits.

    The umask belongs to the whole process, so this is kept to the moments a driver
    creates a file itself (opening a new DuckDB database): other threads creating files
    meanwhile get them owner-only too, which is safe. Nested and concurrent uses share
    one saved umask, restored when the last one leaves.
    """
    global _umask_users, _umask_saved
    with _umask_lock:
        if _umask_users == 0:
            _umask_saved = os.umask(0o077)
            os.umask(_umask_saved | 0o077)
        _umask_users += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_users -= 1
            if _umask_users == 0:
                os.umask(_umask_saved)


__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "create_private_file",
    "make_private_dirs",
    "private_umask",
    "restrict_if_owned",
]
