"""PostgreSQL's writes through psycopg's pipeline mode: statements sent without waiting.

A batch of bundles (``save_bundles``) goes out as one pipeline that waits only where a
result decides what comes next; a large columnar write goes out in chunks of
:data:`PIPELINE_CHUNK` rows, so the server works on one chunk while this process converts
the next. Kept apart from :mod:`~polylogue.storage.backends.postgresql.backend`, which
is about connections, the pool and errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import psycopg
from aiosql.types import SQLOperationType
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from polylogue.storage import batches, rows
from polylogue.storage.backends.base import SQLBackend
from polylogue.storage.backends.postgresql.adapter import FaithfulPsycopgAdapter
from polylogue.storage.backends.postgresql.values import unescape
from polylogue.storage.backends.writes import RefWrites, id_rows
from polylogue.storage.records import AttachmentRecord

PIPELINE_CHUNK = 1000
"""Rows per statement when a large columnar batch goes through psycopg's pipeline mode."""
_LOCKED_BY = {
    "upsert_conversations": "conversation_id",
    "upsert_messages": "message_id",
    "upsert_attachments": "attachment_id",
    "insert_attachment_refs": "ref_id",
    "refresh_ref_counts": "attachment_id",
    "delete_unreferenced_attachments": "attachment_id",
    "lock_attachments": "attachment_id",
}
"""The id whose row (or key) each bulk write locks: concurrent writers lock in its order."""
_FOREIGN = ("message_id", "owner", "claimant")


class PipelinedWrites(SQLBackend):
    """The write paths of :class:`~polylogue.storage.backends.postgresql.PostgresBackend`."""

    def _write_rows(self, conn: Any, query_name: str, params: list[rows.Params]) -> int:
        """Send a large columnar batch in chunks through psycopg's pipeline mode.

        The server upserts one chunk while this process converts the next, instead of
        waiting for the whole batch to be converted first (measured, ``save_many`` of
        100,000 messages: about 30,000 msg/s against 27,000 as one statement). Chunks run
        in order, so an id listed in two chunks ends with its last values, as in one
        statement; a failing chunk fails the call (the transaction level is then failed).
        """
        query = getattr(self.queries, query_name)
        if (
            query.operation is not SQLOperationType.INSERT_UPDATE_DELETE
            or len(params) <= PIPELINE_CHUNK
            or not psycopg.Pipeline.is_supported()
        ):
            return super()._write_rows(conn, query_name, params)
        with conn.pipeline():
            sent = self._send(conn, query_name, params)
        return _rowcount(sent)

    def _write_messages(
        self, conn: Any, params: list[rows.Params]
    ) -> tuple[int, list[rows.Params]]:
        """A batch over :data:`PIPELINE_CHUNK` rows goes in chunks through pipeline mode,
        as :meth:`_write_rows` sends other writes; each chunk returns the messages it
        touched (see the base class)."""
        if len(params) <= PIPELINE_CHUNK or not psycopg.Pipeline.is_supported():
            return super()._write_messages(conn, params)
        with conn.pipeline():
            sent = self._send(conn, "upsert_messages", params, tuple_row)
        return _count_touched(sent)

    def _write_bundles(
        self,
        conn: Any,
        conversations: list[rows.Params],
        messages: list[rows.Params],
        records: list[AttachmentRecord],
        keep: dict[str, list[str]],
    ) -> tuple[int, int, int]:
        """A batch of bundles in one psycopg pipeline: the statements go out without
        waiting for each other (large ones in chunks), and the counts are read when all
        have run. The server works on one statement while this process converts the
        next; the pipeline waits only where a result decides what comes next: the
        prune's rows say which attachments lose a ref (what to lock and recount), and the
        refs' row count whether the saved ones are recounted too (measured:
        docs/BENCHMARKS.md).

        When the call has a transaction of its own, its ``BEGIN`` and ``COMMIT`` go out in
        the pipeline too (:meth:`_pipeline`): a bundle then costs two or three round
        trips in all. ``COMMIT`` is sent once the results that could refuse the batch
        (messages another conversation owns) are read.

        The statements, their order and what they recount are the base class's, so rows
        are locked as every writer locks them.
        """
        if not psycopg.Pipeline.is_supported():
            return super()._write_bundles(conn, conversations, messages, records, keep)
        touched: list[tuple[dict[str, Any], Any]] = []
        refs: list[tuple[dict[str, Any], Any]] = []
        with self._pipeline(conn) as pipeline:
            written = self._send(conn, "upsert_conversations", conversations)
            if messages:
                touched = self._send(conn, "upsert_messages", messages, tuple_row)
            # Reading the prune's rows waits for everything sent so far.
            plan = RefWrites.after_prune(records, keep, self._delete_refs(conn, keep), True)
            changed_messages, foreign = _count_touched(touched)
            if foreign:
                raise batches.ownership_error(foreign, self._failed_saving())
            if plan.attachments:
                self._send(conn, "upsert_attachments", plan.attachments)
                if plan.refs:
                    refs = self._send(conn, "insert_attachment_refs", plan.refs)
                    # Whether a ref was new decides what is recounted: a sync (a round
                    # trip) costs less than recounting the refs of every saved attachment.
                    pipeline.sync()
            elif plan.losing:
                self._send(conn, "lock_attachments", id_rows(plan.losing))
            recount = (plan.losing | plan.saved) if _rowcount(refs) else plan.losing
            if recount:
                self._send(conn, "refresh_ref_counts", id_rows(recount))
            if plan.losing:
                self._send(conn, "delete_unreferenced_attachments", id_rows(plan.losing))
        return _rowcount(written), changed_messages, _rowcount(refs) + plan.unstored

    @contextmanager
    def _pipeline(self, conn: Any) -> Iterator[psycopg.Pipeline]:
        """``conn.pipeline()``; when the running call has a transaction of its own that has
        not started, with its ``BEGIN`` first and its ``COMMIT`` last (when the block ends
        without an error).

        psycopg would send ``BEGIN`` itself with the first statement, but waits for it
        in pipeline mode: the connection is put back in autocommit, where ``BEGIN`` is
        an ordinary statement and nothing is waited for. A failure leaves the
        transaction open, for the caller's rollback (``_rollback_outer``).
        """
        own = self._commit_follows and conn.info.transaction_status == TransactionStatus.IDLE
        if own:
            conn.autocommit = True
        with conn.pipeline() as pipeline:
            if own:
                self._execute_verb(conn, self.begin_verb)
            yield pipeline
            if own:
                self._execute_verb(conn, "COMMIT")

    def _send(
        self, conn: Any, query_name: str, params: list[rows.Params], row_factory: Any = None
    ) -> list[tuple[dict[str, Any], Any]]:
        """Send a columnar query over ``params``, :data:`PIPELINE_CHUNK` rows per
        statement, without waiting for it when the connection is in pipeline mode;
        returns each chunk's parameters as stored and its cursor, whose rows and rowcount
        are there once the pipeline has synced.

        Rows are sorted by the id their statement locks (stably: repeated ids keep their
        order) so that the chunks, each written in id order, lock in id order together.
        """
        sql = getattr(self.queries, query_name).sql
        key = _LOCKED_BY.get(query_name)
        if len(params) > PIPELINE_CHUNK and key is not None:
            params = sorted(params, key=itemgetter(key))
        return [self._adapter.send(conn, sql, chunk, row_factory) for chunk in _chunks(params)]

    @property
    def _adapter(self) -> FaithfulPsycopgAdapter:
        adapter: FaithfulPsycopgAdapter = self.queries.driver_adapter
        return adapter


def _rowcount(sent: list[tuple[dict[str, Any], Any]]) -> int:
    """The rows the sent chunks of a write changed."""
    return sum(max(cursor.rowcount, 0) for _, cursor in sent)


def _count_touched(sent: list[tuple[dict[str, Any], Any]]) -> tuple[int, list[rows.Params]]:
    """From the pipelined ``upsert_messages`` chunks (stored parameters, cursor): (messages
    inserted or changed, those stored under another conversation). Ids are compared in
    stored form, as plain tuples: unescaping and a dict per row cost a tenth of a large
    batch (measured)."""
    claimant: dict[str, str] = {}
    for stored, _ in sent:
        claimant.update(zip(stored["message_id"], stored["conversation_id"], strict=True))
    changed, foreign = 0, []
    for _, cursor in sent:
        for message_id, stored_under in cursor.fetchall():
            if stored_under == claimant[message_id]:
                changed += 1
            else:
                found = (message_id, stored_under, claimant[message_id])
                foreign.append(dict(zip(_FOREIGN, map(unescape, found), strict=True)))
    return changed, foreign


def _chunks(params: list[rows.Params]) -> Iterator[dict[str, list[Any]]]:
    """``params`` as columns, :data:`PIPELINE_CHUNK` rows at a time (made as they are sent)."""
    for start in range(0, len(params), PIPELINE_CHUNK):
        chunk = params[start : start + PIPELINE_CHUNK]
        yield {key: [row[key] for row in chunk] for key in chunk[0]}


__all__ = ["PIPELINE_CHUNK", "PipelinedWrites"]
