"""Copying an archive from one database to another: the engine behind ``polylogue copy``.

Moving to another backend (SQLite to PostgreSQL, say) is an export piped into an import,
without the file in between: the source is read the way export reads it (keyset pages,
bounded memory) and saved through :meth:`StorageRepository.save_many` in batches, one
transaction each. Saving is idempotent (an unchanged row is skipped, not written), so a
copy that was interrupted is resumed by running it again: it inserts what is missing and
reports the rest as skipped. A copy never deletes: conversations the target holds and
the source does not stay, and ``polylogue verify`` reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from polylogue.archive.exporter import iter_bundles
from polylogue.protocols import StorageBackend
from polylogue.storage.repository import (
    DEFAULT_BATCH_SIZE,
    Bundle,
    SaveCounts,
    StorageRepository,
    empty_counts,
)


@dataclass(slots=True)
class CopySummary:
    """What a copy did: the repository's counts, the runs copied and bundles read."""

    counts: SaveCounts = field(default_factory=empty_counts)
    runs: int = 0
    bundles_read: int = 0


CopyProgress = Callable[[int], None]
"""Called with the number of bundles read from the source so far."""


def copy_archive(
    source_backend: StorageBackend,
    target_repository: StorageRepository,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: CopyProgress | None = None,
) -> CopySummary:
    """Copy every run and conversation of ``source_backend`` into ``target_repository``.

    Runs first (``record_run`` replaces a run with the same id, so copying them again is
    harmless), then the bundles, ``batch_size`` per transaction. An error propagates
    with the batches before it committed; running the copy again goes on from there.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    summary = CopySummary()
    for run in source_backend.get_runs():
        target_repository.record_run(run)
        summary.runs += 1

    def counted() -> Iterator[Bundle]:
        for item in iter_bundles(source_backend):
            yield item
            summary.bundles_read += 1
            if progress is not None:
                progress(summary.bundles_read)

    summary.counts = target_repository.save_many(counted(), batch_size=batch_size)
    # A freshly loaded PostgreSQL table is planned from guesses until analysed.
    target_repository.backend.analyze()
    return summary


__all__ = ["CopyProgress", "CopySummary", "copy_archive"]
