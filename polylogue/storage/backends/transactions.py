"""Transactions of the binding: per thread, nested as savepoints, failed levels refused.

Transactions are per thread. ``begin()`` at depth 0 takes a connection and opens a
transaction on it, which stays pinned to the thread until the matching ``commit()`` or
``rollback()``; deeper ``begin()`` calls open savepoints ``sp_1``, ``sp_2``, ...

Outside a transaction every write call runs in a transaction of its own. Inside one, a
write call that fails marks its level failed, as PostgreSQL does: ``commit()`` of that
level rolls it back and raises :class:`TransactionError`, so the partial work of a failed
call is never committed. To carry on after a failure, run the call in a nested
``transaction()`` (a savepoint). No savepoint is taken per call: on the bundle path that
costs about a sixth of SQLite's write throughput (measured, docs/BENCHMARKS.md).

Driver errors become :class:`~polylogue.errors.DatabaseError` subclasses naming the
operation and the database (:meth:`TransactionalBackend._errors`), and cleanup after a
failure never masks its cause (:mod:`polylogue.storage.faults`). This is a base class of
:class:`~polylogue.storage.backends.base.SQLBackend`, kept apart so that the protocol
methods there read as query calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from polylogue.errors import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    TransactionError,
    TransientError,
)
from polylogue.storage.faults import cleaning_up, note_cleanup_failure, one_line, run_cleanups


class _ThreadState:
    """The transaction of one thread: its pinned connection and nesting depth."""

    __slots__ = ("conn", "depth", "failed_level", "failure", "one_call")

    def __init__(self) -> None:
        self.conn: Any = None
        self.depth = 0
        self.one_call = False
        """The transaction is one write call's own, committed as soon as the call returns."""
        self.failed_level: int | None = None
        """The outermost level a failed call (or a rollback that could not be honoured
        by a savepoint) has marked; its commit() must roll back and raise."""
        self.failure = ""

    def mark_failed(self, level: int, why: str) -> None:
        if self.failed_level is None or level < self.failed_level:
            self.failed_level, self.failure = level, why


class TransactionalBackend:
    """Connections, transactions and error translation; a dialect supplies the first."""

    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = ()
    operational_errors: ClassVar[tuple[type[Exception], ...]] = ()
    transient_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """Conflicts with concurrent transactions that a retry of the transaction may clear."""
    supports_savepoints: ClassVar[bool] = True
    begin_verb: ClassVar[str] = "BEGIN"

    def __init__(self) -> None:
        self._local = threading.local()

    # -- what a dialect provides ------------------------------------------------------

    def describe(self) -> str:
        """Where this backend stores things, for messages (never with a password)."""
        raise NotImplementedError

    def _acquire(self) -> Any:
        """A connection for the calling thread (outside a transaction)."""
        raise NotImplementedError

    def _release(self, conn: Any) -> None:
        """Give back a connection from :meth:`_acquire` (when its transaction ended)."""

    def _execute_verb(self, conn: Any, verb: str) -> None:
        """Run a transaction-control statement."""
        conn.execute(verb)

    def _begin_outer(self, conn: Any) -> None:
        self._execute_verb(conn, self.begin_verb)

    def _commit_outer(self, conn: Any) -> None:
        self._execute_verb(conn, "COMMIT")

    def _rollback_outer(self, conn: Any) -> None:
        self._execute_verb(conn, "ROLLBACK")

    def _begin_nested(self, conn: Any, depth: int) -> None:
        self._execute_verb(conn, f"SAVEPOINT sp_{depth}")

    def _commit_nested(self, conn: Any, depth: int) -> None:
        self._execute_verb(conn, f"RELEASE SAVEPOINT sp_{depth}")

    def _rollback_nested(self, conn: Any, depth: int) -> None:
        self._execute_verb(conn, f"ROLLBACK TO SAVEPOINT sp_{depth}")
        self._execute_verb(conn, f"RELEASE SAVEPOINT sp_{depth}")

    def close(self) -> None:
        """Close every connection this backend opened."""

    # -- transactions -----------------------------------------------------------------

    @property
    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState()
        return state

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread has an open transaction on this backend."""
        return self._state.depth > 0

    @property
    def _commit_follows(self) -> bool:
        """Whether the running write call has a transaction of its own, committed as soon
        as the call returns: a dialect may then send ``COMMIT`` with the call's last
        statements (PostgreSQL's pipeline), and :meth:`commit` finds nothing left to do."""
        state = self._state
        return state.one_call and state.depth == 1

    def begin(self) -> None:
        """Open a transaction, or a savepoint inside the calling thread's transaction."""
        state = self._state
        if state.depth == 0:
            conn = self._acquire()
            try:
                with self._errors("begin"):
                    self._begin_outer(conn)
            except BaseException as exc:
                with cleaning_up(exc, "giving the connection back"):
                    self._release(conn)
                raise
            state.conn = conn
            state.failed_level, state.failure = None, ""
            state.one_call = False
        else:
            with self._errors("begin (savepoint)"):
                self._begin_nested(state.conn, state.depth)
        state.depth += 1

    def commit(self) -> None:
        """Commit the innermost level: the transaction, or release its savepoint.

        The level ends either way: when committing fails, its work is not committed (the
        transaction is rolled back, or the enclosing level is marked failed) and the
        error that made it fail is raised, never an error of the cleanup after it.
        """
        state = self._state
        if state.depth == 0:
            raise TransactionError("commit() called with no transaction open in this thread")
        if state.failed_level is not None and state.failed_level >= state.depth:
            hint = (
                " (run calls that may fail in a nested transaction() to carry on after them)"
                if self.supports_savepoints
                else ""
            )
            refused = TransactionError(
                f"commit() refused on {self.describe()}: {state.failure}; this level was"
                f" rolled back{hint}"
            )
            try:
                self.rollback()
            except Exception as failure:
                note_cleanup_failure(refused, "the rollback", failure)
            raise refused
        if state.depth > 1:
            try:
                with self._errors("commit (release savepoint)"):
                    self._commit_nested(state.conn, state.depth - 1)
            except BaseException as exc:
                self._end_nested_level_failed("commit (release savepoint)", exc)
                raise
            state.depth -= 1
            return
        conn = state.conn
        try:
            with self._errors("commit"):
                self._commit_outer(conn)
        except BaseException as exc:
            self._abandon(conn, cause=exc)
            raise
        self._finish(conn)

    def rollback(self) -> None:
        """Undo the innermost level: the whole transaction, or back to its savepoint."""
        state = self._state
        if state.depth == 0:
            raise TransactionError("rollback() called with no transaction open in this thread")
        if state.depth > 1:
            try:
                with self._errors("rollback (to savepoint)"):
                    self._rollback_nested(state.conn, state.depth - 1)
            except BaseException as exc:
                self._end_nested_level_failed("rollback (to savepoint)", exc)
                raise
            if state.failed_level is not None and state.failed_level >= state.depth:
                state.failed_level, state.failure = None, ""
            state.depth -= 1
            return
        self._abandon(state.conn)

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """``with backend.transaction():`` commits on success and rolls back on exception."""
        self.begin()
        try:
            yield self
        except BaseException as exc:
            with cleaning_up(exc, "the rollback"):
                self.rollback()
            raise
        self.commit()

    def _end_nested_level_failed(self, operation: str, exc: BaseException) -> None:
        """A savepoint could not be released or rolled back: end its level anyway.

        What it did is in an unknown state, so the enclosing level is marked failed (its
        commit() rolls back); leaving the level open would pin the transaction forever.
        """
        state = self._state
        state.depth -= 1
        state.mark_failed(state.depth, f"{operation} failed inside it ({one_line(str(exc))})")

    def _abandon(self, conn: Any, cause: BaseException | None = None) -> None:
        """Roll the outer transaction back and end it, even on a broken connection.

        After a failure (``cause``) the driver may have ended the transaction already
        (SQLite and DuckDB roll back a COMMIT that failed on a full disk): an error of
        this rollback is then a note on the cause, never raised in its place.
        """

        def roll_back() -> None:
            with self._errors("rollback"):
                self._rollback_outer(conn)

        run_cleanups(
            cause,
            ("the rollback", roll_back),
            ("giving the connection back", lambda: self._finish(conn)),
        )

    def _finish(self, conn: Any) -> None:
        state = self._state
        state.conn = None
        state.depth = 0
        state.failed_level, state.failure = None, ""
        state.one_call = False
        self._release(conn)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Re-raise driver exceptions as :class:`DatabaseError` naming operation and place."""
        try:
            yield
        except self.driver_errors as exc:
            raise self._translate(operation, exc) from exc

    def _translate(self, operation: str, exc: Exception) -> DatabaseError:
        if isinstance(exc, self.transient_errors):
            kind: type[DatabaseError] = TransientError
        elif isinstance(exc, self.integrity_errors):
            kind = IntegrityError
        elif isinstance(exc, self.operational_errors):
            kind = OperationalError
        else:
            kind = DatabaseError
        hint = self._hint(exc)
        return kind(
            f"{operation} failed on {self.describe()}: {one_line(str(exc))}"
            + (f"; {hint}" if hint else "")
        )

    def _hint(self, exc: Exception) -> str:
        """What to do about a driver error the dialect recognises (disk full, ...), or ""."""
        return ""

    @contextmanager
    def _reading(self, operation: str) -> Iterator[Any]:
        """The connection to read with: the thread's transaction, or one just for this."""
        state = self._state
        if state.depth:
            with self._errors(operation):
                yield state.conn
            return
        with self._own_connection() as conn, self._errors(operation):
            yield conn

    @contextmanager
    def _own_connection(self) -> Iterator[Any]:
        """A connection acquired for this block and given back after it, even after a
        failure (whose cause a failing give-back never hides)."""
        conn = self._acquire()
        try:
            yield conn
        except BaseException as exc:
            with cleaning_up(exc, "giving the connection back"):
                self._release(conn)
            raise
        self._release(conn)

    @contextmanager
    def _writing(self, operation: str) -> Iterator[Any]:
        """The connection to write with: the thread's transaction, or one just for this.

        Inside a transaction a failure marks the current level failed (see the module
        docstring); outside, the call's own transaction is rolled back.
        """
        state = self._state
        if state.depth:
            try:
                with self._errors(operation):
                    yield state.conn
            except BaseException as exc:
                state.mark_failed(state.depth, f"{operation} failed inside it ({exc})")
                raise
            return
        self.begin()
        state.one_call = True
        try:
            with self._errors(operation):
                yield state.conn
        except BaseException as exc:
            with cleaning_up(exc, "the rollback"):
                self.rollback()
            raise
        self.commit()
