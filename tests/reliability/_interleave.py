"""Forcing an interleaving of two transactions: one held open, one made to wait on it.

:class:`Side` runs a piece of work in a transaction of its own thread; with ``hold=True``
it keeps that transaction open after the work until :meth:`Side.release`. A test opens
the first side, starts the second, waits until the second is blocked on the first
(:func:`wait_until_blocked`) and then releases the first: the order of events is fixed,
not left to the scheduler.

On PostgreSQL "blocked" is read from the server (``pg_blocking_pids``). SQLite and DuckDB
serialise writers at ``begin()`` (a file lock, a process lock) and have nothing to ask, so
there the waiting side is given a moment to reach its lock; their answer must be right
either way, since they run one writer at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from polylogue.storage.backends import SQLBackend

WAIT = 15.0
"""Seconds any step may take before the test calls it hung."""
SETTLE = 0.3
"""Seconds a side is given to reach a lock it cannot be seen waiting for (SQLite, DuckDB)."""


class Side(threading.Thread):
    """``work(backend)`` in a transaction on its own thread; its result or its error."""

    def __init__(
        self, backend: SQLBackend, work: Callable[[SQLBackend], Any], *, hold: bool = False
    ) -> None:
        super().__init__(daemon=True)
        self.backend = backend
        self.work = work
        self.hold = hold
        self.done_work = threading.Event()
        self._release = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.pid: int | None = None

    def run(self) -> None:
        try:
            with self.backend.transaction():
                conn = self.backend._state.conn
                self.pid = getattr(getattr(conn, "info", None), "backend_pid", None)
                self.result = self.work(self.backend)
                self.done_work.set()
                if self.hold and not self._release.wait(WAIT):
                    raise AssertionError("the held transaction was never released")
        except BaseException as exc:
            self.error = exc
        finally:
            self.done_work.set()

    def opened(self) -> Side:
        """Start, and return once the work ran and the transaction is held open."""
        self.start()
        assert self.done_work.wait(WAIT), "the first side never finished its work"
        if self.error is not None:
            raise self.error
        return self

    def release(self) -> None:
        self._release.set()

    def finish(self) -> Any:
        """Wait for the end of the transaction; its work's result (or raise its error)."""
        self.join(WAIT)
        assert not self.is_alive(), "a side is still running (deadlocked?)"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until_blocked(backend: SQLBackend, holder: Side, waiter: Side) -> None:
    """Return once ``waiter`` waits for a lock ``holder`` holds (PostgreSQL), or after a
    moment elsewhere; fail if ``waiter`` finished instead of waiting."""
    if backend.dialect != "postgresql":
        time.sleep(SETTLE)
    else:
        assert holder.pid is not None
        deadline = time.monotonic() + WAIT
        while not blocked_by(holder.pid):
            assert not waiter.done_work.is_set(), (
                f"the second side did not wait for the first (error: {waiter.error!r})"
            )
            assert time.monotonic() < deadline, "the second side never blocked"
            time.sleep(0.01)
    assert not waiter.done_work.is_set(), (
        f"the second side ran through the first one's lock (error: {waiter.error!r})"
    )


def blocked_by(pid: int | None) -> bool:
    """Whether some PostgreSQL session waits for a lock the session ``pid`` holds."""
    from tests.support_postgres import admin_execute

    assert pid is not None

    rows = admin_execute(
        "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
    )
    return bool(rows and rows[0][0])
