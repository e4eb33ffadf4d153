"""Broken environments for the tests: a full disk, another user, the rows of a database.

* :func:`small_disk` mounts a tmpfs of a few megabytes (we run as root in CI); where
  mounting is not allowed it yields None and the caller falls back or says why not.
* :func:`as_other_user` runs a function in a forked child that dropped root for the
  ``nobody`` user, so that file permissions apply (root bypasses them). The child is
  forked after everything is imported: the interpreter itself may live where ``nobody``
  cannot read (``/root/.pyenv``), so a fresh ``python`` could not even start.
* :func:`shared_folder` is a folder ``nobody`` can reach (pytest's ``tmp_path`` is not).
"""

from __future__ import annotations

import os
import pickle
import pwd
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from polylogue.storage.backends import SQLBackend

T = TypeVar("T")

TABLE_KEYS = {
    "conversations": "conversation_id",
    "messages": "message_id",
    "attachments": "attachment_id",
    "attachment_refs": "ref_id",
}


def table_rows(backend: SQLBackend) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the archive's tables, sorted by key (raw SQL, for comparing runs)."""
    found = {}
    with backend._reading("test snapshot") as conn:
        for table, key in TABLE_KEYS.items():
            cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")
            found[table] = [tuple(row) for row in cursor.fetchall()]
    return found


@contextmanager
def small_disk(where: Path, megabytes: int) -> Iterator[Path | None]:
    """A tmpfs of ``megabytes`` mounted at ``where``; None where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until the disk is full; returns it (delete to free)."""
    ballast = folder / "ballast"
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return ballast


def nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A new folder under the system's temporary folder that ``nobody`` can enter."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root (root ignores file permissions)")
    folder = Path(tempfile.mkdtemp(prefix="polylogue-perm-"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def give_to_nobody(*paths: Path) -> None:
    uid, gid = nobody()
    for path in paths:
        os.chown(path, uid, gid)


def as_other_user(work: Callable[[], T]) -> T:
    """``work()`` run by the ``nobody`` user in a forked child; its result or its error.

    An exception in the child is raised here as an AssertionError carrying the child's
    traceback.
    """
    uid, gid = nobody()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        outcome: tuple[str, Any]
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            outcome = ("ok", work())
        except BaseException:
            outcome = ("error", traceback.format_exc())
        try:
            with os.fdopen(write_end, "wb") as out:
                pickle.dump(outcome, out)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    assert data, f"the child acting as nobody died (wait status {status})"
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"the child acting as nobody failed:\n{value}")
    result: T = value
    return result
