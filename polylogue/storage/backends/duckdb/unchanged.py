"""Whether saving one bundle would change nothing, learned by reading instead of writing.

A DuckDB statement costs milliseconds to plan whether or not it writes (measured: the
one-row conversation upsert 5-6 ms, ``EXPLAIN`` of it as long), so re-saving an unchanged
bundle, six statements that change nothing, cost nearly what saving it first did (1.18x).
The reads here are point reads that the queries of ``get_conversation``, ``get_messages``
and ``get_attachments`` already serve; a new conversation costs one of them.

Only certainty skips the writes: a stored value must equal the saved one and be of the
same Python type (``1 == 1.0 == True``, but not to SQL), and every row, ref and list
must be there as the writes would leave it. Anything else, a message stored under
another conversation included, takes the full path, which decides (and refuses) as
always. DuckDB runs one writer at a time (the write lock of ``begin()``), and a
transaction that reads and writes nothing is equivalent to one that ran first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from polylogue.storage import rows
from polylogue.storage.queries import (
    ATTACHMENT_MERGE_COLUMNS,
    CONVERSATION_UPDATE_COLUMNS,
    MESSAGE_UPDATE_COLUMNS,
)
from polylogue.storage.records import AttachmentRecord, make_ref_id

UNCHANGED_READS = ("get_conversation", "get_messages", "get_attachments")
"""The queries :func:`bundle_is_stored` reads with, in the order it may run them."""


def bundle_is_stored(
    queries: Any,
    conn: Any,
    conversation: rows.Params,
    messages: list[rows.Params],
    records: list[AttachmentRecord],
    keep: dict[str, list[str]],
) -> bool:
    """Whether the writes of this one bundle would change no row (checked parameters)."""
    cid = conversation["conversation_id"]
    stored = queries.get_conversation(conn, conversation_id=cid)
    if not _same(stored, conversation, CONVERSATION_UPDATE_COLUMNS):
        return False
    if messages:
        found = {row["message_id"]: row for row in queries.get_messages(conn, conversation_id=cid)}
        if not all(_same(found.get(m["message_id"]), m, MESSAGE_UPDATE_COLUMNS) for m in messages):
            return False
    if not records and cid not in keep:
        return not keep
    if set(keep) - {cid} or any(r.conversation_id != cid for r in records):
        return False
    refs = list(queries.get_attachments(conn, conversation_id=cid))
    ref_ids = {make_ref_id(row["attachment_id"], cid, row["message_id"]) for row in refs}
    if cid in keep and ref_ids != set(keep[cid]):
        return False  # the prune would delete a ref, or a listed ref is not stored
    attachments = {row["attachment_id"]: row for row in refs}
    return all(
        r.ref_id in ref_ids and _merged(attachments[r.attachment_id], rows.attachment_params(r))
        for r in records
    )


def _same(stored: Mapping[str, Any] | None, saved: rows.Params, columns: Iterable[str]) -> bool:
    return stored is not None and all(_equal(stored[c], saved[c]) for c in columns)


def _merged(stored: Mapping[str, Any], saved: rows.Params) -> bool:
    """The attachment upsert keeps a stored value where the saved one is NULL."""
    return all(saved[c] is None or _equal(stored[c], saved[c]) for c in ATTACHMENT_MERGE_COLUMNS)


def _equal(stored: Any, saved: Any) -> bool:
    return type(stored) is type(saved) and bool(stored == saved)


__all__ = ["UNCHANGED_READS", "bundle_is_stored"]
