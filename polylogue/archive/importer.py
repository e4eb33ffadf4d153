"""Streaming bundle files into a database: the engine behind ``polylogue import``.

An archive file can be far larger than memory, so it is read one line at a time and
written one batch of bundles at a time (one ``save_many`` call, one transaction, per
batch): memory holds at most one batch, whatever the file size. A bad line is never
written; what happens next is the caller's choice (``on_error``): ``"skip"`` records it
and goes on, ``"stop"`` drops the batch being collected (a batch is never written in
part) and stops, leaving earlier batches committed. Because saving is idempotent,
running the same import again after fixing the file is safe: what is already stored is
counted as skipped.

No click here: the command line (``polylogue/cli/archive_import.py``) only prints what
:func:`import_archives` returns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from polylogue.archive.files import STDIO, iter_lines, open_archive_input, total_size
from polylogue.archive.format import ArchiveFormatError, BundleItem, RunItem, decode_line
from polylogue.archive.progress import Progress
from polylogue.errors import MessageOwnershipError
from polylogue.storage.records import RunRecord
from polylogue.storage.repository import (
    DEFAULT_BATCH_SIZE,
    Bundle,
    SaveCounts,
    StorageRepository,
    add_counts,
    empty_counts,
)

OnError = Literal["stop", "skip"]
Location = tuple[str, int]
"""Where a line came from: (the path as given, ``-`` for standard input; line number)."""

RERUN_ADVICE = (
    "fix the file and run the import again: what is already stored is reported as skipped"
)


@dataclass
class ImportSummary:
    """What an import did: counts, rejected lines and, if it stopped early, where."""

    inserted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: dict[str, Any] | None = None
    stop_note: str | None = None
    """Why the import stopped and what was not imported (None when it did not stop)."""
    files: int = 0
    bundles_read: int = 0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary (``polylogue import --json``)."""
        return {
            "inserted": dict(self.inserted),
            "skipped": dict(self.skipped),
            "runs": self.runs,
            "rejected": [dict(item) for item in self.rejected],
            "stopped_at": dict(self.stopped_at) if self.stopped_at is not None else None,
        }


def display_name(path: str) -> str:
    """How a path is named in messages: ``<stdin>`` for ``-``."""
    return "<stdin>" if path == STDIO else path


class _FileRefused(Exception):
    """The header refuses the whole file (another format, a newer version)."""


class _Stop(Exception):
    """Raised inside the loop to end the import early (``on_error="stop"``)."""


class _Importer:
    """The state of one import: the batch being collected and the running totals."""

    def __init__(self, repository: StorageRepository, batch_size: int, on_error: OnError) -> None:
        self.repository = repository
        self.batch_size = batch_size
        self.on_error = on_error
        self.counts = empty_counts()
        self.summary = ImportSummary()
        # Parallel lists, not objects per bundle: the per-line cost is two appends.
        self.batch: list[Bundle] = []
        self.where: list[Location] = []
        self.runs: list[RunRecord] = []
        self.first: Location | None = None  # the first line of the unwritten batch

    # --- reading --------------------------------------------------------------------

    def read_file(self, path: str, progress: bool) -> None:
        self.summary.files += 1
        bar = (
            Progress(total_size(path), label=f"import {_short(path)}", enabled=True)
            if progress
            else None
        )
        try:
            with open_archive_input(path) as stream:
                self._read_lines(path, stream, bar)
        finally:
            if bar is not None:
                bar.close()

    def _read_lines(self, path: str, stream: Any, bar: Progress | None) -> None:
        batch, where, runs = self.batch, self.where, self.runs
        size = self.batch_size
        for line_no, raw in iter_lines(stream):
            try:
                item = decode_line(raw, line_no)
            except ArchiveFormatError as exc:
                # a refused header: nothing after it can be read as this format
                whole_file = exc.line == 1 and _is_header(raw)
                self._bad_line(path, exc, whole_file)
                if whole_file:
                    return
                continue
            if type(item) is BundleItem:
                if self.first is None:
                    self.first = (path, line_no)
                batch.append(item.bundle)
                where.append((path, line_no))
                self.summary.bundles_read += 1
                if len(batch) >= size:
                    self.flush()
                    batch, where, runs = self.batch, self.where, self.runs
            elif type(item) is RunItem:
                if self.first is None:
                    self.first = (path, line_no)
                runs.append(item.run)
                if len(runs) >= size:
                    self.flush()
                    batch, where, runs = self.batch, self.where, self.runs
            if bar is not None:
                bar.update(stream.consumed, self.summary.bundles_read)

    def _bad_line(self, path: str, exc: ArchiveFormatError, whole_file: bool) -> None:
        reason = exc.reason
        if whole_file:
            reason += " (the rest of this file was not read)"
        self._reject(path, exc.line, reason)
        if self.on_error == "stop":
            first_file, first_line = self.first or (path, exc.line)
            self.summary.stopped_at = {"file": path, "line": exc.line}
            self.summary.stop_note = (
                f"stopped at {display_name(path)}:{exc.line}: lines from"
                f" {display_name(first_file)}:{first_line} on were not imported (a batch is"
                f" never written in part; the batches before it are saved); {RERUN_ADVICE}"
            )
            raise _Stop

    def _reject(self, path: str, line: int, error: str) -> None:
        self.summary.rejected.append({"file": path, "line": line, "error": error})

    # --- writing --------------------------------------------------------------------

    def flush(self) -> None:
        """Write the collected batch in one transaction, then its run lines."""
        batch, where, runs = self.batch, self.where, self.runs
        self.batch, self.where, self.runs, self.first = [], [], [], None
        ownership: MessageOwnershipError | None = None
        if batch:
            try:
                add_counts(self.counts, self.repository.save_many(batch, batch_size=len(batch)))
            except MessageOwnershipError as exc:
                if exc.saved:
                    for key in self.counts:
                        self.counts[key] += exc.saved.get(key, 0)  # type: ignore[literal-required]
                ownership = exc
        # After the batch: a run line is only stored once what precedes it could be.
        for run in runs:
            self.repository.record_run(run)
        self.summary.runs += len(runs)
        if ownership is not None:
            self._ownership(ownership, where)

    def _ownership(self, exc: MessageOwnershipError, where: list[Location]) -> None:
        claimed = {claimant: (mid, owner) for mid, owner, claimant in reversed(exc.collisions)}
        rejected = sorted(exc.rejected_bundles)
        for index, cid in rejected:
            path, line = where[index]
            mid, owner = claimed.get(cid, (exc.message_id, exc.owner))
            self._reject(
                path,
                line,
                f"conversation {cid!r} was not saved: its message {mid!r} belongs to"
                f" conversation {owner!r} (a message id belongs to one conversation for"
                " good: give the message an id of its own)",
            )
        if self.on_error == "stop":
            path, line = where[rejected[0][0]]
            last_file, last_line = where[-1]
            self.summary.stopped_at = {"file": path, "line": line}
            self.summary.stop_note = (
                f"stopped at {display_name(path)}:{line}: the other bundles of its batch"
                f" (up to {display_name(last_file)}:{last_line}) are saved; lines after"
                f" {display_name(last_file)}:{last_line} were not imported; {RERUN_ADVICE}"
            )
            raise _Stop

    def finish(self) -> ImportSummary:
        counts: SaveCounts = self.counts
        self.summary.inserted = {
            "conversations": counts["conversations"],
            "messages": counts["messages"],
            "attachments": counts["attachments"],
        }
        self.summary.skipped = {
            "conversations": counts["skipped_conversations"],
            "messages": counts["skipped_messages"],
            "attachments": counts["skipped_attachments"],
        }
        return self.summary


def import_archives(
    repository: StorageRepository,
    paths: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_error: OnError = "stop",
    progress: bool = False,
) -> ImportSummary:
    """Import the bundle files ``paths`` (``-``: standard input) in order.

    Bundles are written ``batch_size`` at a time, each batch in one transaction (a batch
    may hold lines of consecutive files). Bad lines and bundles the repository refuses
    (a message id another conversation owns) are listed in ``rejected``; with
    ``on_error="stop"`` the first one ends the import (see :class:`ImportSummary`'s
    ``stopped_at`` and ``stop_note``). Database and file errors propagate: the batches
    committed before them stay, and running the import again is safe.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    importer = _Importer(repository, batch_size, on_error)
    try:
        for path in paths:
            importer.read_file(path, progress)
        importer.flush()
    except _Stop:
        pass
    summary = importer.finish()
    if summary.inserted.get("messages") or summary.inserted.get("conversations"):
        # A freshly loaded PostgreSQL table is planned from guesses until analysed.
        repository.backend.analyze()
    return summary


def _short(path: str) -> str:
    return "stdin" if path == STDIO else os.path.basename(path) or path


def _is_header(raw: bytes) -> bool:
    """Whether a line refused on line 1 was meant as a header (a ``format`` key, alone).

    Only called for a refused first line, so parsing it again costs nothing that counts.
    """
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and "format" in obj and not obj.keys() & {"conversation", "run"}


__all__ = ["ImportSummary", "OnError", "display_name", "import_archives"]
