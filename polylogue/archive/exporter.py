"""Streaming a database out as a bundle file: the engine behind ``polylogue export``.

An archive can be far larger than memory, so conversations are read in keyset pages
(``list_conversations_by_id``: "the ids after the last one seen", never OFFSET, which
would rescan every earlier row on each page) and written one bundle at a time: memory
holds one page of conversation records and the messages of :data:`RANGE_SIZE` of them
(read by one query), whatever the archive's size. The order of the lines is the one
``docs/archive-format.md`` fixes, the same on every backend, so export -> import ->
export is byte-identical on any backend.

No click here: ``polylogue/cli/archive_export.py`` only prints what this returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import IO, TypeVar

from polylogue.archive.format import encode_bundle, encode_header, encode_run
from polylogue.protocols import StorageBackend
from polylogue.storage.records import AttachmentRecord, MessageRecord
from polylogue.storage.repository import Bundle

DEFAULT_PAGE_SIZE = 1000
"""Conversation records fetched per query: few round trips, a small page in memory."""

RANGE_SIZE = 100
"""Conversations whose messages (and refs) are read by one query: one query per
conversation costs milliseconds each on DuckDB, while a whole page's messages could be
many (memory holds those of this many conversations)."""

_Owned = TypeVar("_Owned", MessageRecord, AttachmentRecord)


@dataclass(slots=True)
class ExportSummary:
    """What an export wrote: lines of each kind, records inside them, and bytes."""

    conversations: int = 0
    messages: int = 0
    attachments: int = 0
    runs: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


ExportProgress = Callable[[ExportSummary], None]
"""Called after each bundle line with the running totals (for a progress bar)."""


def iter_bundles(
    backend: StorageBackend,
    *,
    provider: str | None = None,
    since: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[Bundle]:
    """Every conversation (optionally of ``provider``, updated at or after ``since``) with
    its messages and attachment references, by ``conversation_id`` in code-point order.

    Messages and attachments come in the backend's order, which is the export order,
    read for :data:`RANGE_SIZE` conversations at a time.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    after = ""  # no conversation has the empty id, so the first page starts at the top
    while True:
        page = backend.list_conversations_by_id(
            after, limit=page_size, provider=provider, since=since
        )
        low = after
        for start in range(0, len(page), RANGE_SIZE):
            chunk = page[start : start + RANGE_SIZE]
            high = chunk[-1].conversation_id
            # Rows of conversations a filter left out of the page come too; they are dropped.
            messages = _by_conversation(backend.list_messages_in_id_range(low, high))
            attachments = _by_conversation(backend.list_attachments_in_id_range(low, high))
            for conversation in chunk:
                cid = conversation.conversation_id
                yield conversation, messages.get(cid, []), attachments.get(cid, [])
            low = high
        if len(page) < page_size:
            return
        after = page[-1].conversation_id


def _by_conversation(records: list[_Owned]) -> dict[str, list[_Owned]]:
    """Records sorted by conversation, as lists per ``conversation_id``."""
    return {cid: list(group) for cid, group in groupby(records, key=_owner)}


def _owner(record: MessageRecord | AttachmentRecord) -> str:
    return record.conversation_id


def write_archive(
    backend: StorageBackend,
    out: IO[bytes],
    *,
    provider: str | None = None,
    since: str | None = None,
    progress: ExportProgress | None = None,
) -> ExportSummary:
    """Write the header, the runs and every bundle of ``backend`` to ``out``.

    The runs (newest first) are written only for a whole-archive export: a run records
    an import of the whole archive, so with a ``provider`` or ``since`` filter it would
    describe conversations the file does not hold, and importing the file would add
    runs to the target that never happened there. The runs are few (one per import) and
    read in one query.
    """
    summary = ExportSummary()
    summary.bytes += _write(out, encode_header())
    if provider is None and since is None:
        for run in backend.get_runs():
            summary.bytes += _write(out, encode_run(run))
            summary.runs += 1
    for conversation, messages, attachments in iter_bundles(
        backend, provider=provider, since=since
    ):
        summary.bytes += _write(out, encode_bundle(conversation, messages, attachments))
        summary.conversations += 1
        summary.messages += len(messages)
        summary.attachments += len(attachments)
        if progress is not None:
            progress(summary)
    return summary


def _write(out: IO[bytes], data: bytes) -> int:
    out.write(data)
    return len(data)


__all__ = ["DEFAULT_PAGE_SIZE", "ExportProgress", "ExportSummary", "iter_bundles", "write_archive"]
