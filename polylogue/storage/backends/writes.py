"""How the binding writes a batch: row-wise or columnar statements, messages, refs.

The protocol methods of :class:`~polylogue.storage.backends.base.SQLBackend` hand their
checked rows to these; what differs between dialects is said by the shape of a query
(``*!`` runs per row, ``!`` per column list) and by three class attributes, never by
asking whether a query exists:

- ``binds_lists``: the driver binds a list to a parameter, so several conversations are
  pruned in one ``prune_attachment_refs_many`` (PostgreSQL, DuckDB);
- ``row_locks``: writers run concurrently and lock rows (PostgreSQL), so attachments and
  conversations are locked in one order (``lock_attachments``, ``lock_conversation``);
- ``split_upsert_rows``: from this many messages a batch is classified, inserted and
  updated in three statements instead of one ON CONFLICT upsert (DuckDB).

Each names the queries a dialect must then define (:mod:`polylogue.storage.queries`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from aiosql.types import SQLOperationType

from polylogue.storage import batches, rows
from polylogue.storage.backends.transactions import TransactionalBackend
from polylogue.storage.queries import MESSAGE_UPDATE_COLUMNS
from polylogue.storage.records import AttachmentRecord


class SetWrites(TransactionalBackend):
    """The write paths the binding shares; ``queries`` is the dialect's loaded set."""

    queries: Any
    binds_lists: ClassVar[bool] = False
    """The driver binds a list to a parameter: the dialect defines ``LIST_QUERIES``."""
    row_locks: ClassVar[bool] = False
    """Writers run concurrently and lock rows: the dialect defines ``ROW_LOCK_QUERIES``."""
    split_upsert_rows: ClassVar[int | None] = None
    """Batches of at least this many messages take the three-statement path: the dialect
    defines ``SPLIT_UPSERT_QUERIES``."""
    reads_before: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Protocol method -> the read queries a dialect runs before its writes (DuckDB, to
    learn that a bundle would change nothing), for ``polylogue sql show``."""

    def _write_rows(self, conn: Any, query_name: str, params: list[rows.Params]) -> int:
        """Run a bulk query over ``params``: per row (``*!``) or per column (``!``)."""
        query = getattr(self.queries, query_name)
        if query.operation is SQLOperationType.INSERT_UPDATE_DELETE_MANY:
            changed: int = query(conn, params)
        else:
            changed = query(conn, **{key: [row[key] for row in params] for key in params[0]})
        return max(changed, 0)

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
        if self.split_upsert_rows is not None and len(params) >= self.split_upsert_rows:
            return self._split_upsert_messages(conn, params)
        query = self.queries.upsert_messages
        if query.operation is not SQLOperationType.SELECT:
            return self._write_rows(conn, "upsert_messages", params), []
        touched = list(query(conn, **batches.columns(params, *params[0])))
        return batches.split_touched(touched, params)

    def _split_upsert_messages(
        self, conn: Any, params: list[rows.Params]
    ) -> tuple[int, list[rows.Params]]:
        """A large batch where ``split_upsert_rows`` says so (DuckDB): ``classify_messages``
        (ids only, and their owners: a message of another conversation stops the call
        before anything is written), a plain ``insert_messages`` of the new ones and, when
        some were stored already, ``update_changed_messages`` (see
        ``sql/duckdb/messages.sql`` for why this beats one ON CONFLICT there)."""
        columns = batches.columns(params, *params[0])
        found = list(
            self.queries.classify_messages(
                conn, message_id=columns["message_id"], conversation_id=columns["conversation_id"]
            )
        )
        foreign: list[rows.Params] = [
            {
                "message_id": columns["message_id"][row["position"] - 1],
                "owner": row["owner"],
                "claimant": columns["conversation_id"][row["position"] - 1],
            }
            for row in found
            if row["stored"] and row["owner"] != columns["conversation_id"][row["position"] - 1]
        ]
        if foreign:
            return 0, foreign
        new = [row["position"] - 1 for row in found if not row["stored"]]
        stored = [row["position"] - 1 for row in found if row["stored"]]
        changed = 0
        if new:
            changed += self.queries.insert_messages(conn, **_pick(columns, new))
        if stored:
            update = {key: columns[key] for key in MESSAGE_UPDATE_COLUMNS}
            changed += self.queries.update_changed_messages(conn, **_pick(update, stored))
        return int(changed), []

    def _write_bundles(
        self,
        conn: Any,
        conversations: list[rows.Params],
        messages: list[rows.Params],
        records: list[AttachmentRecord],
        keep: dict[str, list[str]],
    ) -> tuple[int, int, int]:
        """Write a batch of bundles (checked parameters, messages unique); returns
        (conversations inserted or changed, messages inserted or changed, refs new).

        Rows are written in the order every writer locks them: conversations, messages,
        attachments. A dialect may send the statements without waiting for each
        (PostgreSQL pipelines a bundle); this is the plain order of calls.
        """
        changed = self._write_rows(conn, "upsert_conversations", conversations)
        changed_messages = 0
        if messages:
            changed_messages, foreign = self._write_messages(conn, messages)
            if foreign:
                raise batches.ownership_error(foreign, self._failed_saving())
        new_refs = self._replace_refs(conn, records, keep)[0] if records or keep else 0
        return changed, changed_messages, new_refs

    def _failed_saving(self) -> str:
        """The start of a MessageOwnershipError's message: what failed, where."""
        return f"save_messages failed on {self.describe()}"

    def _replace_refs(
        self, conn: Any, records: list[AttachmentRecord], keep: dict[str, list[str]]
    ) -> tuple[int, int, int]:
        """Save ``records`` and prune each conversation of ``keep`` to the ref ids it
        lists; returns (refs new, refs deleted, attachment rows changed).

        Safe under concurrent writers that lock rows (PostgreSQL, READ COMMITTED; see
        ``sql/postgresql/attachments.sql``): the refs to prune are deleted first (deleting
        a ref needs no lock on its attachment; recounting does); then every attachment
        touched, saved or losing a ref, is locked in one id-ordered pass; only then are
        refs counted, by a statement of their own, and attachments left without refs
        deleted. A writer adding a ref to an attachment holds its lock from the upsert on,
        so no count can miss a committed ref, nor delete an attachment someone refers to.
        """
        plan = RefWrites.after_prune(records, keep, self._delete_refs(conn, keep), self.row_locks)
        changed_rows = new_refs = 0
        if plan.attachments:
            changed_rows = self._write_rows(conn, "upsert_attachments", plan.attachments)
            if plan.refs:
                new_refs = self._write_rows(conn, "insert_attachment_refs", plan.refs)
        elif plan.losing and self.row_locks:
            list(self.queries.lock_attachments(conn, attachment_id=sorted(plan.losing)))
        recount = (plan.losing | plan.saved) if new_refs else plan.losing
        if recount:
            self._write_rows(conn, "refresh_ref_counts", id_rows(recount))
        if plan.losing:
            self._write_rows(conn, "delete_unreferenced_attachments", id_rows(plan.losing))
        return new_refs + plan.unstored, plan.removed + plan.unstored, changed_rows

    def _delete_refs(self, conn: Any, keep: dict[str, list[str]]) -> list[tuple[str, str]]:
        """Delete the refs of ``keep``'s conversations that it does not list; returns
        the deleted refs as (ref_id, attachment_id)."""
        if len(keep) > 1 and self.binds_lists:
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


@dataclass(frozen=True)
class RefWrites:
    """What saving attachment records and pruning refs writes, once the prune has run:
    the rows to upsert (lock-only rows included, in one id-ordered pass), the refs to
    insert, and the attachments whose refs change (to recount, and delete when none is
    left)."""

    attachments: list[rows.Params]
    refs: list[rows.Params]
    saved: set[str]
    losing: set[str]
    """Attachments that lost a ref: recounted, and deleted when left without refs."""
    removed: int
    """Refs the prune deleted."""
    unstored: int
    """Refs both saved and pruned in the same call (an earlier bundle of a conversation
    in the batch), never stored: counted as new and as deleted."""

    @classmethod
    def after_prune(
        cls,
        records: list[AttachmentRecord],
        keep: dict[str, list[str]],
        removed: list[tuple[str, str]],
        lock_rows: bool,
    ) -> RefWrites:
        kept = {(cid, ref_id) for cid, ref_ids in keep.items() for ref_id in ref_ids}
        # A record its conversation's list leaves out (an earlier bundle of it in the same
        # batch) is saved and pruned at once: its attachment row is written, its ref never.
        dropped = {
            r.ref_id: r.attachment_id
            for r in records
            if r.conversation_id in keep and (r.conversation_id, r.ref_id) not in kept
        }
        losing = {a for _ref_id, a in removed} | set(dropped.values())
        saved: set[str] = {r.attachment_id for r in records}
        attachments = [rows.attachment_params(r) for r in records]
        if attachments and lock_rows:
            # All-NULL rows change nothing (NULL never overwrites) but are locked with
            # the rest, in the same ordered pass.
            attachments += [_lock_only(a) for a in sorted(losing - saved)]
        refs = [rows.ref_params(r) for r in records if r.ref_id not in dropped]
        # Dropped refs that were not stored: the save would have added them, the prune
        # deleted them again.
        unstored = len(set(dropped) - {ref_id for ref_id, _a in removed})
        return cls(attachments, refs, saved, losing, len(removed), unstored)


def id_rows(attachment_ids: set[str]) -> list[rows.Params]:
    """Parameter rows of attachment ids, in id order (the order rows are locked in)."""
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


def _pick(columns: dict[str, list[Any]], positions: list[int]) -> dict[str, list[Any]]:
    """The rows at ``positions`` (0-based) of column lists, as column lists."""
    if len(positions) == len(next(iter(columns.values()))):
        return columns
    return {key: [values[i] for i in positions] for key, values in columns.items()}
