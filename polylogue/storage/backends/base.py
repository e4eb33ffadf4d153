"""``SQLBackend``: the protocol implemented once, by calling a dialect's named queries.

A dialect subclass supplies connections (``_acquire``/``_release``), the transaction verbs
it needs and its driver's exception types; everything a method *does* is here, as calls of
queries named like the method (``get_messages`` runs ``sql/<dialect>/messages.sql``'s
``get_messages``).

Transactions are per thread. ``begin()`` at depth 0 takes a connection and opens a
transaction on it, which stays pinned to the thread until the matching ``commit()`` or
``rollback()``; deeper ``begin()`` calls open savepoints ``sp_1``, ``sp_2``, ...

Outside a transaction every write call runs in a transaction of its own. Inside one, a
write call that fails marks its level failed, as PostgreSQL does: ``commit()`` of that
level rolls it back and raises :class:`TransactionError`, so the partial work of a failed
call is never committed. To carry on after a failure, run the call in a nested
``transaction()`` (a savepoint). No savepoint is taken per call: on the bundle path that
costs about a sixth of SQLite's write throughput (measured, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from aiosql.types import SQLOperationType
from pydantic import BaseModel

from polylogue.errors import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    TransactionError,
    TransientError,
)
from polylogue.storage import batches, rows
from polylogue.storage.faults import cleaning_up, note_cleanup_failure, one_line, run_cleanups
from polylogue.storage.migrate import MigrationRunner, MigrationTarget
from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.sqlfiles import QuerySpec, load_queries
from polylogue.types import ConversationId

_CONVERSATION_COLUMNS = (
    "conversation_id",
    "provider_name",
    "provider_conversation_id",
    "title",
    "created_at",
    "updated_at",
    "content_hash",
    "provider_meta",
    "version",
)
_MESSAGE_COLUMNS = (
    "message_id",
    "conversation_id",
    "provider_message_id",
    "role",
    "text",
    "timestamp",
    "content_hash",
    "provider_meta",
    "version",
)

QUERIES: dict[str, QuerySpec] = {
    # conversations.sql
    "upsert_conversation": QuerySpec("conversations.sql", _CONVERSATION_COLUMNS, "!"),
    "get_conversation": QuerySpec("conversations.sql", ("conversation_id",), "^"),
    "list_conversations": QuerySpec(
        "conversations.sql", ("source", "provider", "max_rows", "skip_rows")
    ),
    "delete_conversation": QuerySpec("conversations.sql", ("conversation_id",), "!"),
    # messages.sql
    "upsert_messages": QuerySpec("messages.sql", _MESSAGE_COLUMNS, "*!", bulk=True, returning=True),
    "get_messages": QuerySpec("messages.sql", ("conversation_id",)),
    "delete_conversation_messages": QuerySpec("messages.sql", ("conversation_id",), "!"),
    # attachments.sql
    "upsert_attachments": QuerySpec(
        "attachments.sql",
        ("attachment_id", "mime_type", "size_bytes", "path", "provider_meta"),
        "*!",
        bulk=True,
    ),
    "insert_attachment_refs": QuerySpec(
        "attachments.sql",
        ("ref_id", "attachment_id", "conversation_id", "message_id", "provider_meta"),
        "*!",
        bulk=True,
    ),
    "refresh_ref_counts": QuerySpec("attachments.sql", ("attachment_id",), "*!", bulk=True),
    "get_attachments": QuerySpec("attachments.sql", ("conversation_id",)),
    "prune_attachment_refs": QuerySpec("attachments.sql", ("conversation_id", "keep_ref_ids")),
    "delete_unreferenced_attachments": QuerySpec(
        "attachments.sql", ("attachment_id",), "*!", bulk=True
    ),
    # runs.sql
    "record_run": QuerySpec(
        "runs.sql",
        (
            "run_id",
            "timestamp",
            "plan_snapshot",
            "counts_json",
            "drift_json",
            "is_indexed",
            "duration_ms",
        ),
        "!",
    ),
    "get_runs": QuerySpec("runs.sql", ("max_rows",)),
    # stats.sql
    "provider_counts": QuerySpec("stats.sql"),
    "messages_per_month": QuerySpec("stats.sql"),
    # schema_migrations.sql (the migration runner's bookkeeping)
    "create_schema_migrations": QuerySpec("schema_migrations.sql", (), "!"),
    "schema_migrations_exists": QuerySpec("schema_migrations.sql", (), "$"),
    "get_applied_migrations": QuerySpec("schema_migrations.sql"),
    "record_migration": QuerySpec(
        "schema_migrations.sql", ("version", "name", "checksum", "applied_at"), "!"
    ),
}
"""Every query the binding calls, on every dialect: name -> file, parameters, operation."""

_R = TypeVar("_R", bound=BaseModel)


class _ThreadState:
    """The transaction of one thread: its pinned connection and nesting depth."""

    __slots__ = ("conn", "depth", "failed_level", "failure")

    def __init__(self) -> None:
        self.conn: Any = None
        self.depth = 0
        self.failed_level: int | None = None
        """The outermost level a failed call (or a rollback that could not be honoured
        by a savepoint) has marked; its commit() must roll back and raise."""
        self.failure = ""

    def mark_failed(self, level: int, why: str) -> None:
        if self.failed_level is None or level < self.failed_level:
            self.failed_level, self.failure = level, why


class SQLBackend:
    """The :class:`~polylogue.protocols.StorageBackend` binding, shared by every dialect."""

    dialect: ClassVar[str]
    sql_folder: ClassVar[str | None] = None
    """The folder name under ``sql/`` and ``migrations/`` when it is not ``dialect``."""
    driver_adapter: ClassVar[str | Callable[..., Any]]
    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()
    integrity_errors: ClassVar[tuple[type[Exception], ...]] = ()
    operational_errors: ClassVar[tuple[type[Exception], ...]] = ()
    transient_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """Conflicts with concurrent transactions that a retry of the transaction may clear."""
    dialect_queries: ClassVar[Mapping[str, QuerySpec]] = {}
    """Queries only this dialect needs (connection pragmas, locks), checked like the rest."""
    supports_savepoints: ClassVar[bool] = True
    begin_verb: ClassVar[str] = "BEGIN"

    def __init__(self) -> None:
        self.queries: Any = load_queries(
            self.sql_folder or self.dialect,
            self.driver_adapter,
            {**QUERIES, **self.dialect_queries},
        )
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
    def transaction(self) -> Iterator[SQLBackend]:
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
        self._release(conn)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Re-raise driver exceptions as :class:`DatabaseError` naming operation and place."""
        try:
            yield
        except self.driver_errors as exc:
            raise self._translate(operation, exc) from exc

    def _write_rows(self, conn: Any, query_name: str, params: list[rows.Params]) -> int:
        """Run a bulk query over ``params``: per row (``*!``) or per column (``!``)."""
        query = getattr(self.queries, query_name)
        if query.operation is SQLOperationType.INSERT_UPDATE_DELETE_MANY:
            changed: int = query(conn, params)
        else:
            changed = query(conn, **{key: [row[key] for row in params] for key in params[0]})
        return max(changed, 0)

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
        conn = self._acquire()
        try:
            with self._errors(operation):
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
        try:
            with self._errors(operation):
                yield self._state.conn
        except BaseException as exc:
            with cleaning_up(exc, "the rollback"):
                self.rollback()
            raise
        self.commit()

    # -- the protocol -----------------------------------------------------------------

    def get_conversation(self, conversation_id: ConversationId | str) -> ConversationRecord | None:
        with self._reading("get_conversation") as conn:
            row = self.queries.get_conversation(conn, conversation_id=conversation_id)
        return None if row is None else rows.conversation_from_row(row)

    def list_conversations(
        self,
        source: str | None = None,
        provider: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ConversationRecord]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        with self._reading("list_conversations") as conn:
            found = list(
                self.queries.list_conversations(
                    conn, source=source, provider=provider, max_rows=limit, skip_rows=offset
                )
            )
        return [rows.conversation_from_row(row) for row in found]

    def save_conversation(self, record: ConversationRecord) -> int:
        params = rows.conversation_params(_as(ConversationRecord, record))
        with self._writing("save_conversation") as conn:
            changed = self.queries.upsert_conversation(conn, **params)
        return 1 if changed else 0

    def save_conversations(self, records: Sequence[ConversationRecord]) -> int:
        """Upsert many conversations at once; returns how many were inserted or changed.

        Where a statement costs more than the rows it writes (a round trip on PostgreSQL,
        milliseconds on DuckDB) the dialect defines ``upsert_conversations`` and a batch is
        one statement; elsewhere (SQLite) it is one ``upsert_conversation`` per record.
        """
        checked = [_as(ConversationRecord, r) for r in records]
        if len(checked) > 1:
            # An id listed twice keeps its last values and counts once (batches.py).
            checked = list({r.conversation_id: r for r in checked}.values())
        if len(checked) == 1 or (checked and not self._has_query("upsert_conversations")):
            with self._writing("save_conversations"):
                return sum(self.save_conversation(record) for record in checked)
        if not checked:
            return 0
        params = [rows.conversation_params(r) for r in checked]
        with self._writing("save_conversations") as conn:
            return self._write_rows(conn, "upsert_conversations", params)

    def get_messages(self, conversation_id: ConversationId | str) -> list[MessageRecord]:
        with self._reading("get_messages") as conn:
            found = list(self.queries.get_messages(conn, conversation_id=conversation_id))
        return [rows.message_from_row(row) for row in found]

    def save_messages(self, records: Sequence[MessageRecord]) -> int:
        """Upsert many messages; returns how many distinct ids were inserted or changed.

        An id listed twice keeps its last values; a message stored under (or listed under)
        another conversation fails the whole call with MessageOwnershipError (batches.py).
        """
        params = batches.unique_messages(
            [rows.message_params(_as(MessageRecord, r)) for r in records], self._failed_saving
        )
        if not params:
            return 0
        with self._writing("save_messages") as conn:
            changed, foreign = self._write_messages(conn, params)
            if foreign:
                raise batches.ownership_error(foreign, self._failed_saving())
        return changed

    def _failed_saving(self) -> str:
        """The start of a MessageOwnershipError's message: what failed, where."""
        return f"save_messages failed on {self.describe()}"

    def _write_messages(
        self, conn: Any, params: list[rows.Params]
    ) -> tuple[int, list[rows.Params]]:
        """Upsert unique message rows; returns (rows inserted or changed, the batch's
        messages stored under another conversation: ``message_id, owner, claimant``).

        No statement changes a message of another conversation. A columnar
        ``upsert_messages`` (PostgreSQL, DuckDB) returns every message it inserted or
        touched with the conversation it is stored under, so such messages are found in
        the same statement: under READ COMMITTED only a statement that waited for a
        concurrent writer's row sees what that writer committed, and a check query of
        its own would cost a round trip (measured: 9-30% of a one-bundle transaction).
        A per-row one (SQLite) refuses them itself (sql/<dialect>/messages.sql).
        """
        query = self.queries.upsert_messages
        if query.operation is not SQLOperationType.SELECT:
            return self._write_rows(conn, "upsert_messages", params), []
        touched = list(query(conn, **batches.columns(params, *params[0])))
        return batches.split_touched(touched, params)

    def get_attachments(self, conversation_id: ConversationId | str) -> list[AttachmentRecord]:
        with self._reading("get_attachments") as conn:
            found = list(self.queries.get_attachments(conn, conversation_id=conversation_id))
        return [rows.attachment_from_row(row) for row in found]

    def save_attachments(self, records: Sequence[AttachmentRecord]) -> int:
        return self.save_attachments_counted(records)[0]

    def save_attachments_counted(self, records: Sequence[AttachmentRecord]) -> tuple[int, int]:
        """Like :meth:`save_attachments`; returns (refs new, attachment rows changed)."""
        checked = [_as(AttachmentRecord, r) for r in records]
        if not checked:
            return 0, 0
        with self._writing("save_attachments") as conn:
            new_refs, _removed, changed_rows = self._replace_refs(conn, checked, {})
        return new_refs, changed_rows

    def replace_attachments(
        self, records: Sequence[AttachmentRecord], keep_ref_ids: Mapping[str, Sequence[str]]
    ) -> tuple[int, int]:
        """:meth:`save_attachments` of ``records``, then :meth:`prune_attachments_many` of
        ``keep_ref_ids``, as one call (a bundle's attachments); returns (refs new, refs
        deleted), as the two calls would.

        One call, so that the attachment rows both steps touch are locked in one ordered
        pass (see :meth:`_replace_refs`): as two calls, a writer saving [s2] and pruning
        s1 while another saves [s1] and prunes s2 would deadlock.
        """
        checked = [_as(AttachmentRecord, r) for r in records]
        keep = _keep_lists(keep_ref_ids)
        if not checked and not keep:
            return 0, 0
        with self._writing("save_attachments") as conn:
            new_refs, removed, _changed = self._replace_refs(conn, checked, keep)
        return new_refs, removed

    def prune_attachments(
        self, conversation_id: ConversationId | str, keep_ref_ids: Sequence[str]
    ) -> int:
        if isinstance(keep_ref_ids, str):
            raise TypeError("keep_ref_ids must be a sequence of ref ids, not one string")
        return self.prune_attachments_many({conversation_id: keep_ref_ids})

    def prune_attachments_many(self, keep_ref_ids: Mapping[str, Sequence[str]]) -> int:
        """:meth:`prune_attachments` for several conversations: ``{conversation_id:
        ref ids to keep}``; returns the refs deleted.

        One statement (``prune_attachment_refs_many``, bound to column lists) where the
        dialect defines it; elsewhere one per conversation.
        """
        keep = _keep_lists(keep_ref_ids)
        if not keep:
            return 0
        with self._writing("prune_attachments") as conn:
            return self._replace_refs(conn, [], keep)[1]

    def _has_query(self, name: str) -> bool:
        """Whether this dialect defines the optional set-based query ``name``."""
        return name in self.dialect_queries

    def _replace_refs(
        self, conn: Any, records: list[AttachmentRecord], keep: dict[str, list[str]]
    ) -> tuple[int, int, int]:
        """Save ``records`` and prune each conversation of ``keep`` to the ref ids it
        lists; returns (refs new, refs deleted, attachment rows changed).

        Safe under concurrent writers that lock rows (PostgreSQL, READ COMMITTED; see
        ``sql/postgres/attachments.sql``): the refs to prune are deleted first (deleting
        a ref needs no lock on its attachment; recounting does); then every attachment
        touched, saved or losing a ref, is locked in one id-ordered pass; only then are
        refs counted, by a statement of their own, and attachments left without refs
        deleted. A writer adding a ref to an attachment holds its lock from the upsert on,
        so no count can miss a committed ref, nor delete an attachment someone refers to.
        """
        removed = self._delete_refs(conn, keep)
        kept = {(cid, ref_id) for cid, ref_ids in keep.items() for ref_id in ref_ids}
        # A record its conversation's list leaves out (an earlier bundle of it in the same
        # batch) is saved and pruned at once: its attachment row is written, its ref never.
        dropped = {
            r.ref_id: r.attachment_id
            for r in records
            if r.conversation_id in keep and (r.conversation_id, r.ref_id) not in kept
        }
        losing = {a for _ref_id, a in removed} | set(dropped.values())
        saved = {r.attachment_id for r in records}
        changed_rows = new_refs = 0
        if records:
            params = [rows.attachment_params(r) for r in records]
            if self._has_query("lock_attachments"):
                # All-NULL rows change nothing (NULL never overwrites) but are locked
                # with the rest, in the same ordered pass.
                params += [_lock_only(a) for a in sorted(losing - saved)]
            changed_rows = self._write_rows(conn, "upsert_attachments", params)
            refs = [rows.ref_params(r) for r in records if r.ref_id not in dropped]
            if refs:
                new_refs = self._write_rows(conn, "insert_attachment_refs", refs)
        elif losing and self._has_query("lock_attachments"):
            list(self.queries.lock_attachments(conn, attachment_id=sorted(losing)))
        recount = (losing | saved) if new_refs else losing
        if recount:
            self._write_rows(conn, "refresh_ref_counts", _id_rows(recount))
        if losing:
            self._write_rows(conn, "delete_unreferenced_attachments", _id_rows(losing))
        # Dropped refs that were not stored: the save would have added them, the prune
        # deleted them again.
        unstored = len(set(dropped) - {ref_id for ref_id, _a in removed})
        return new_refs + unstored, len(removed) + unstored, changed_rows

    def _delete_refs(self, conn: Any, keep: dict[str, list[str]]) -> list[tuple[str, str]]:
        """Delete the refs of ``keep``'s conversations that it does not list; returns
        the deleted refs as (ref_id, attachment_id)."""
        if len(keep) > 1 and self._has_query("prune_attachment_refs_many"):
            pairs = [(cid, ref_id) for cid, ref_ids in keep.items() for ref_id in ref_ids]
            found = list(
                self.queries.prune_attachment_refs_many(
                    conn,
                    conversation_id=list(keep),
                    keep_conversation_id=[cid for cid, _ in pairs],
                    keep_ref_id=[ref_id for _, ref_id in pairs],
                )
            )
        else:
            found = [
                row
                for cid, ref_ids in keep.items()
                for row in self.queries.prune_attachment_refs(
                    conn, conversation_id=cid, keep_ref_ids=rows.dump_json(ref_ids)
                )
            ]
        return [(row["ref_id"], row["attachment_id"]) for row in found]

    def delete_conversation(self, conversation_id: ConversationId | str) -> bool:
        with self._writing("delete_conversation") as conn:
            if self._has_query("lock_conversation"):
                # Nobody adds a ref to it from here on, so the prune below sees them all
                # and the cascade of the final delete finds none to remove uncounted.
                self.queries.lock_conversation(conn, conversation_id=conversation_id)
            # Rows in the order bundles lock them: conversation, messages, attachments.
            self.queries.delete_conversation_messages(conn, conversation_id=conversation_id)
            self._replace_refs(conn, [], {str(conversation_id): []})
            deleted = self.queries.delete_conversation(conn, conversation_id=conversation_id)
        return bool(deleted)

    def record_run(self, record: RunRecord) -> None:
        params = rows.run_params(_as(RunRecord, record))
        with self._writing("record_run") as conn:
            self.queries.record_run(conn, **params)

    def get_runs(self, limit: int | None = None) -> list[RunRecord]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        with self._reading("get_runs") as conn:
            found = list(self.queries.get_runs(conn, max_rows=limit))
        return [rows.run_from_row(row) for row in found]

    def stats(self) -> dict[str, Any]:
        """``{"providers": [...], "messages_per_month": [...]}``, one dict per row."""
        with self._reading("stats") as conn:
            providers = [dict(row) for row in self.queries.provider_counts(conn)]
            months = [dict(row) for row in self.queries.messages_per_month(conn)]
        return {"providers": providers, "messages_per_month": months}

    def migration_target(self) -> MigrationTarget:
        """How the migration runner drives this dialect."""
        raise NotImplementedError

    def _migrate_on_open(self) -> None:
        """Apply pending migrations while opening; a failure closes what was opened."""
        try:
            self.migration_runner().migrate()
        except BaseException as exc:
            with cleaning_up(exc, "closing the backend"):
                self.close()
            raise

    def migration_runner(self) -> MigrationRunner:
        """The runner for this database: ``status()``, ``migrate(dry_run=...)``."""
        return MigrationRunner(self.migration_target(), where=self.describe())

    def schema_version(self) -> int:
        """The schema version the database is at (0 for an empty one)."""
        target = self.migration_target()
        with target.migration_connection() as conn:
            return target.read_version(conn)

    def __enter__(self) -> SQLBackend:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def _id_rows(attachment_ids: set[str]) -> list[rows.Params]:
    return [{"attachment_id": a} for a in sorted(attachment_ids)]


def _lock_only(attachment_id: str) -> rows.Params:
    """An upsert_attachments row that changes nothing: it only locks the attachment."""
    return {
        "attachment_id": attachment_id,
        "mime_type": None,
        "size_bytes": None,
        "path": None,
        "provider_meta": None,
    }


def _keep_lists(keep_ref_ids: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{conversation_id: [ref ids]}`` checked: a bare string is not a list of ref ids."""
    if not isinstance(keep_ref_ids, Mapping):
        raise TypeError("keep_ref_ids must map conversation ids to sequences of ref ids")
    for conversation_id, ref_ids in keep_ref_ids.items():
        if isinstance(ref_ids, str):
            raise TypeError(
                f"keep_ref_ids[{conversation_id!r}] must be a sequence of ref ids, not one string"
            )
    return {cid: list(ref_ids) for cid, ref_ids in keep_ref_ids.items()}


def _as(kind: type[_R], value: object) -> _R:
    """``value`` if it is a ``kind``; a mapping is validated into one (ValidationError)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return kind.model_validate(value)
    raise TypeError(f"expected a {kind.__name__}, got {type(value).__name__}")
