"""How failures are reported: one-line messages, and cleanups that never hide a cause.

When a transaction or a connection fails, the code that cleans up after it (ROLLBACK,
giving a connection back, closing) may fail too, typically for the same reason: a COMMIT
that failed on a full disk has already been rolled back by the driver, so a second
ROLLBACK fails with "no transaction is active". The error the caller must see is the
first one; a cleanup failure is attached to it as a note (shown under its traceback),
never raised in its place.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def one_line(text: str) -> str:
    """``text`` on one line: drivers' multi-line messages joined with ``" "``."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_os_error(exc: OSError) -> str:
    """``Permission denied: /path`` for messages (without Python's ``[Errno 13]``)."""
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def path_problem(path: Path) -> str:
    """Why this user cannot read and write the SQLite database at ``path``, or "" if not seen.

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


def note_cleanup_failure(cause: BaseException, what: str, failure: BaseException) -> None:
    """Attach to ``cause`` that cleaning up after it (``what``) failed as well."""
    cause.add_note(f"then {what} failed too: {type(failure).__name__}: {one_line(str(failure))}")


@contextmanager
def cleaning_up(cause: BaseException | None, what: str) -> Iterator[None]:
    """Run a cleanup after ``cause``: an error of the cleanup becomes a note on ``cause``.

    With no cause (a cleanup after success) the cleanup's error is raised as usual.
    Interrupts (``KeyboardInterrupt``, ``SystemExit``) always propagate.
    """
    try:
        yield
    except Exception as failure:
        if cause is None or failure is cause:
            raise
        note_cleanup_failure(cause, what, failure)


def run_cleanups(cause: BaseException | None, *steps: tuple[str, Callable[[], object]]) -> None:
    """Run every ``(what, step)`` even when one fails.

    After a ``cause`` each failure becomes a note on it; without one, the first failure is
    raised once every step ran, with the later ones as notes on it.
    """
    first: BaseException | None = None
    for what, step in steps:
        try:
            step()
        except Exception as failure:
            if cause is not None:
                note_cleanup_failure(cause, what, failure)
            elif first is None:
                first = failure
            else:
                note_cleanup_failure(first, what, failure)
    if first is not None:
        raise first


__all__ = [
    "cleaning_up",
    "describe_os_error",
    "note_cleanup_failure",
    "one_line",
    "path_problem",
    "run_cleanups",
]
