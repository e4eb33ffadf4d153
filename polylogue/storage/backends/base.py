"""``SQLBackend``: the protocol implemented once, by calling a dialect's named queries.

A dialect subclass supplies connections (``_acquire``/``_release``), the transaction verbs
it needs and its driver's exception types; everything a method *does* is here, as calls of
queries named like the method (``get_messages`` runs ``sql/<dialect>/messages.sql``'s
``get_messages``). Connections and transactions are the base class's
(:mod:`~polylogue.storage.backends.transactions`); which queries exist is
:data:`polylogue.storage.queries.QUERIES`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from polylogue.errors import TransactionError
from polylogue.storage import batches, rows
from polylogue.storage.backends.migration_seam import MigrationSeam
from polylogue.storage.backends.writes import SetWrites
from polylogue.storage.queries import (
    LIST_QUERIES,
    QUERIES,
    RESULT_COLUMNS,
    ROW_LOCK_QUERIES,
    SPLIT_UPSERT_QUERIES,
    method_queries,
)
from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.sqlfiles import QuerySpec, load_queries, sql_override
from polylogue.types import ConversationId

_R = TypeVar("_R", bound=BaseModel)


class SQLBackend(MigrationSeam, SetWrites):
    """The :class:`~polylogue.protocols.StorageBackend` binding, shared by every dialect."""

    dialect: ClassVar[str]
    """The dialect's one name: its folder under ``sql/`` and ``migrations/`` too."""
    driver_adapter: ClassVar[str | Callable[..., Any]]
    dialect_queries: ClassVar[Mapping[str, QuerySpec]] = {}
    """Queries only this dialect needs (connection pragmas), checked like the rest."""

    def __init__(self, sql_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.sql_dir: Path | None = sql_override(sql_dir)
        """The override folder the queries come from (``sql_dir=``, else
        ``$POLYLOGUE_SQL_DIR``); None for the packaged ones."""
        self.queries: Any = load_queries(
            self.dialect, self.driver_adapter, self.expected_queries(), self.sql_dir
        )

    @classmethod
    def expected_queries(cls) -> dict[str, QuerySpec]:
        """The queries this dialect's ``sql/`` folder must define: the shared contract,
        those its capabilities call for (:mod:`~polylogue.storage.backends.writes`), and
        its own ``dialect_queries``."""
        return {
            **QUERIES,
            **(LIST_QUERIES if cls.binds_lists else {}),
            **(ROW_LOCK_QUERIES if cls.row_locks else {}),
            **(SPLIT_UPSERT_QUERIES if cls.split_upsert_rows is not None else {}),
            **cls.dialect_queries,
        }

    @classmethod
    def method_queries(cls, method: str) -> tuple[str, ...]:
        """The queries protocol ``method`` may run on this dialect, in order: the reads
        it makes before writing (``reads_before``), then those of
        :data:`~polylogue.storage.queries.METHOD_QUERIES` this dialect defines."""
        defined = cls.expected_queries()
        return (*cls.reads_before.get(method, ()), *method_queries(method, defined))

    # -- the protocol -----------------------------------------------------------------

    def get_conversation(self, conversation_id: ConversationId | str) -> ConversationRecord | None:
        """One conversation or None: ``get_conversation`` (``conversations.sql``)."""
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
        """A page of conversations: ``list_conversations`` (``conversations.sql``)."""
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

    def list_conversations_by_id(
        self,
        after: str = "",
        *,
        limit: int = 1000,
        provider: str | None = None,
        since: str | None = None,
    ) -> list[ConversationRecord]:
        """The next ``limit`` conversations after the id ``after`` in ``conversation_id``
        order (code points, the same on every dialect): ``list_conversations_by_id``
        (``conversations.sql``). Pages over an archive without skipping or repeating."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        with self._reading("list_conversations_by_id") as conn:
            found = list(
                self.queries.list_conversations_by_id(
                    conn, after_id=after, provider=provider, since=since, max_rows=limit
                )
            )
        return [rows.conversation_from_row(row) for row in found]

    def save_conversation(self, record: ConversationRecord) -> int:
        """Insert or change one: ``upsert_conversations`` with one row (``conversations.sql``)."""
        return self._upsert_conversations([_as(ConversationRecord, record)], "save_conversation")

    def save_conversations(self, records: Sequence[ConversationRecord]) -> int:
        """Upsert many conversations at once; returns how many were inserted or changed.

        Runs ``upsert_conversations`` (``sql/<dialect>/conversations.sql``): one statement
        for the batch where a statement costs more than its rows (PostgreSQL, DuckDB), one
        per row (``*!``) on SQLite.
        """
        checked = [_as(ConversationRecord, r) for r in records]
        if len(checked) > 1:
            # An id listed twice keeps its last values and counts once (batches.py).
            checked = list({r.conversation_id: r for r in checked}.values())
        return self._upsert_conversations(checked, "save_conversations")

    def _upsert_conversations(self, records: list[ConversationRecord], operation: str) -> int:
        if not records:
            return 0
        params = [rows.conversation_params(r) for r in records]
        with self._writing(operation) as conn:
            return self._write_rows(conn, "upsert_conversations", params)

    def get_messages(self, conversation_id: ConversationId | str) -> list[MessageRecord]:
        """A conversation's messages: ``get_messages`` (``messages.sql``)."""
        with self._reading("get_messages") as conn:
            found = list(self.queries.get_messages(conn, conversation_id=conversation_id))
        return [rows.message_from_row(row) for row in found]

    def list_messages_in_id_range(self, after: str, last: str) -> list[MessageRecord]:
        """The messages of every conversation with ``after < conversation_id <= last``
        (code points), by conversation, each as :meth:`get_messages` orders them:
        ``list_messages_in_id_range`` (``messages.sql``)."""
        with self._reading("list_messages_in_id_range") as conn:
            found = list(self.queries.list_messages_in_id_range(conn, after_id=after, last_id=last))
        return [rows.message_from_row(row) for row in found]

    def save_messages(self, records: Sequence[MessageRecord]) -> int:
        """Upsert many messages; returns how many distinct ids were inserted or changed.

        An id listed twice keeps its last values; a message stored under (or listed under)
        another conversation fails the whole call with MessageOwnershipError (batches.py).
        Runs ``upsert_messages`` (``messages.sql``); a large batch where the dialect sets
        ``split_upsert_rows`` runs ``classify_messages``, ``insert_messages`` and
        ``update_changed_messages`` instead (:mod:`~polylogue.storage.backends.writes`).
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

    def save_bundles(
        self,
        conversations: Sequence[ConversationRecord],
        messages: Sequence[MessageRecord],
        attachments: Sequence[AttachmentRecord],
        keep_ref_ids: Mapping[str, Sequence[str]],
    ) -> tuple[int, int, int]:
        """:meth:`save_conversations`, :meth:`save_messages` and :meth:`replace_attachments`
        as one call: what a batch of bundles writes. Returns (conversations inserted or
        changed, messages inserted or changed, refs new), as the three calls would, with
        their rules for repeated ids and foreign messages.

        One call, so that a dialect can send the batch's statements without waiting for
        each: PostgreSQL pipelines a bundle, so that it costs two round trips instead of
        one per statement. Runs the queries of the three calls.
        """
        checked = [_as(ConversationRecord, r) for r in conversations]
        if len(checked) > 1:
            checked = list({r.conversation_id: r for r in checked}.values())
        message_params = batches.unique_messages(
            [rows.message_params(_as(MessageRecord, r)) for r in messages], self._failed_saving
        )
        records = [_as(AttachmentRecord, r) for r in attachments]
        keep = _keep_lists(keep_ref_ids)
        params = [rows.conversation_params(r) for r in checked]
        with self._writing("save_bundles") as conn:
            return self._write_bundles(conn, params, message_params, records, keep)

    def get_attachments(self, conversation_id: ConversationId | str) -> list[AttachmentRecord]:
        """A conversation's attachments, one per ref: ``get_attachments``
        (``attachments.sql``)."""
        with self._reading("get_attachments") as conn:
            found = list(self.queries.get_attachments(conn, conversation_id=conversation_id))
        return [rows.attachment_from_row(row) for row in found]

    def list_attachments_in_id_range(self, after: str, last: str) -> list[AttachmentRecord]:
        """The refs of every conversation with ``after < conversation_id <= last``, by
        conversation, each as :meth:`get_attachments` orders them:
        ``list_attachments_in_id_range`` (``attachments.sql``)."""
        with self._reading("list_attachments_in_id_range") as conn:
            found = list(
                self.queries.list_attachments_in_id_range(conn, after_id=after, last_id=last)
            )
        return [rows.attachment_from_row(row) for row in found]

    def save_attachments(self, records: Sequence[AttachmentRecord]) -> int:
        """Save attachments and their refs; returns the refs new. Runs
        ``upsert_attachments``, ``insert_attachment_refs`` and ``refresh_ref_counts``
        (``attachments.sql``)."""
        return self.save_attachments_counted(records)[0]

    def save_attachments_counted(self, records: Sequence[AttachmentRecord]) -> tuple[int, int]:
        """Like :meth:`save_attachments` (the same queries); returns (refs new, attachment
        rows changed)."""
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
        s1 while another saves [s1] and prunes s2 would deadlock. Runs the queries of both
        calls.
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
        """Delete a conversation's refs not in ``keep_ref_ids``, and attachments left with
        none; returns the refs deleted. The queries of :meth:`prune_attachments_many`
        (``prune_attachment_refs``, ``refresh_ref_counts``, ``delete_unreferenced_attachments``
        in ``attachments.sql``)."""
        if isinstance(keep_ref_ids, str):
            raise TypeError("keep_ref_ids must be a sequence of ref ids, not one string")
        return self.prune_attachments_many({conversation_id: keep_ref_ids})

    def prune_attachments_many(self, keep_ref_ids: Mapping[str, Sequence[str]]) -> int:
        """:meth:`prune_attachments` for several conversations: ``{conversation_id:
        ref ids to keep}``; returns the refs deleted.

        Runs ``prune_attachment_refs_many`` (one statement, bound to column lists) where
        the dialect ``binds_lists`` and there are several conversations, else one
        ``prune_attachment_refs`` per conversation; then ``lock_attachments`` where it has
        ``row_locks``, ``refresh_ref_counts`` and ``delete_unreferenced_attachments``
        (``attachments.sql``).
        """
        keep = _keep_lists(keep_ref_ids)
        if not keep:
            return 0
        with self._writing("prune_attachments") as conn:
            return self._replace_refs(conn, [], keep)[1]

    def delete_conversation(self, conversation_id: ConversationId | str) -> bool:
        """Delete a conversation, its messages and refs; whether it existed. Runs
        ``lock_conversation`` (``row_locks`` only), ``delete_conversation_messages``
        (``messages.sql``), the prune of :meth:`prune_attachments_many` and
        ``delete_conversation`` (``conversations.sql``)."""
        with self._writing("delete_conversation") as conn:
            if self.row_locks:
                # Nobody adds a ref to it from here on, so the prune below sees them all
                # and the cascade of the final delete finds none to remove uncounted.
                self.queries.lock_conversation(conn, conversation_id=conversation_id)
            # Rows in the order bundles lock them: conversation, messages, attachments.
            self.queries.delete_conversation_messages(conn, conversation_id=conversation_id)
            self._replace_refs(conn, [], {str(conversation_id): []})
            deleted = self.queries.delete_conversation(conn, conversation_id=conversation_id)
        return bool(deleted)

    def record_run(self, record: RunRecord) -> None:
        """Store an ingest run: ``record_run`` (``runs.sql``)."""
        params = rows.run_params(_as(RunRecord, record))
        with self._writing("record_run") as conn:
            self.queries.record_run(conn, **params)

    def get_runs(self, limit: int | None = None) -> list[RunRecord]:
        """The latest runs first: ``get_runs`` (``runs.sql``)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        with self._reading("get_runs") as conn:
            found = list(self.queries.get_runs(conn, max_rows=limit))
        return [rows.run_from_row(row) for row in found]

    def stats(self) -> dict[str, Any]:
        """``{"providers": [...], "messages_per_month": [...]}``, one dict per row:
        ``provider_counts`` and ``messages_per_month`` (``stats.sql``)."""
        with self._reading("stats") as conn:
            providers = [dict(row) for row in self.queries.provider_counts(conn)]
            months = [dict(row) for row in self.queries.messages_per_month(conn)]
        return {"providers": providers, "messages_per_month": months}

    def analyze(self) -> None:
        """Refresh the planner's statistics after a bulk load: ``analyze_tables``
        (``stats.sql``), on a connection of its own outside any transaction (it is a
        script, and SQLite runs scripts only there)."""
        if self.in_transaction:
            raise TransactionError("analyze() runs outside a transaction: call it after commit()")
        with self._reading("analyze") as conn:
            self.queries.analyze_tables(conn)

    def count_rows(self) -> dict[str, int]:
        """Rows per table (conversations, messages, attachments, attachment_refs, runs):
        ``count_rows`` (``stats.sql``)."""
        with self._reading("count_rows") as conn:
            row = self.queries.count_rows(conn)
        return {key: int(row[key]) for key in RESULT_COLUMNS["count_rows"]}

    def __enter__(self) -> SQLBackend:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


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
