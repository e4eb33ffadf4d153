"""Comparing two archives, on any two backends: the engine behind ``polylogue verify``.

After a ``copy`` or a migration to another backend, "the same number of rows" is not
enough: a row can be there with other content. Both sides are therefore read the way
export reads them, and each conversation is hashed as its canonical bundle line, so
"identical" means "would export to the same file", whatever the backends. The two
sides are streamed together in ``conversation_id`` order and merge-joined, so memory
holds one page of each side, whatever the archives' size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from polylogue.archive.exporter import iter_bundles
from polylogue.archive.format import encode_bundle, encode_run
from polylogue.protocols import StorageBackend
from polylogue.storage.repository import Bundle

DEFAULT_SHOWN = 5
"""Conversation ids listed per kind of difference; the rest are counted."""


@dataclass(slots=True)
class IdList:
    """The first ``shown`` ids of one kind of difference, and how many there are."""

    ids: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, cid: str, shown: int) -> None:
        self.count += 1
        if len(self.ids) < shown:
            self.ids.append(cid)


@dataclass(slots=True)
class VerifyReport:
    """How two archives differ: counts per table, conversations on one side only or with
    other content, the runs, and a digest of each whole archive."""

    counts_a: dict[str, int]
    counts_b: dict[str, int]
    digest_a: str = ""
    digest_b: str = ""
    runs_identical: bool = True
    only_a: IdList = field(default_factory=IdList)
    only_b: IdList = field(default_factory=IdList)
    different: IdList = field(default_factory=IdList)

    @property
    def count_differences(self) -> list[tuple[str, int | None, int | None]]:
        """``(table, rows on A, rows on B)`` for each table whose counts differ."""
        tables = list(self.counts_a) + [t for t in self.counts_b if t not in self.counts_a]
        return [
            (t, self.counts_a.get(t), self.counts_b.get(t))
            for t in tables
            if self.counts_a.get(t) != self.counts_b.get(t)
        ]

    @property
    def identical(self) -> bool:
        # The digests alone decide content; the counts also catch rows no bundle shows
        # (an attachment that no conversation references any more).
        return self.digest_a == self.digest_b and not self.count_differences

    def to_json(self) -> dict[str, Any]:
        def ids(found: IdList) -> dict[str, Any]:
            return {"count": found.count, "first": list(found.ids)}

        return {
            "identical": self.identical,
            "counts": {"a": dict(self.counts_a), "b": dict(self.counts_b)},
            "digest": {"a": self.digest_a, "b": self.digest_b},
            "runs_identical": self.runs_identical,
            "only_a": ids(self.only_a),
            "only_b": ids(self.only_b),
            "different": ids(self.different),
        }


class _Side:
    """One archive being read in id order, hashed as it goes."""

    def __init__(self, backend: StorageBackend) -> None:
        self.archive = hashlib.sha256()
        runs = hashlib.sha256()
        for run in backend.get_runs():
            line = encode_run(run)
            self.archive.update(line)
            runs.update(line)
        self.runs_digest = runs.hexdigest()
        self._bundles: Iterator[Bundle] = iter_bundles(backend)
        self.cid: str | None = None
        self.digest = b""
        self.advance()

    def advance(self) -> None:
        """Move to the next conversation (``cid`` None at the end) and hash it."""
        found = next(self._bundles, None)
        if found is None:
            self.cid = None
            return
        self.cid = found[0].conversation_id
        self.digest = hashlib.sha256(encode_bundle(*found)).digest()
        self.archive.update(self.digest)


def compare_archives(
    backend_a: StorageBackend,
    backend_b: StorageBackend,
    *,
    show: int = DEFAULT_SHOWN,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Compare the archives of ``backend_a`` and ``backend_b`` (read only).

    Each side's digest is sha256 over its run lines (export order) followed by the
    sha256 of each conversation's bundle line in ``conversation_id`` order: equal
    digests mean the two archives export to the same bytes. ``progress`` gets the number
    of conversations read from A so far.
    """
    if show < 0:
        raise ValueError(f"show must be >= 0, got {show}")
    report = VerifyReport(counts_a=backend_a.count_rows(), counts_b=backend_b.count_rows())
    a, b = _Side(backend_a), _Side(backend_b)
    report.runs_identical = a.runs_digest == b.runs_digest
    read_a = 0
    while True:
        ca, cb = a.cid, b.cid
        # Python compares str by code point: the order both backends return ids in.
        if ca is not None and (cb is None or ca < cb):
            report.only_a.add(ca, show)
            a.advance()
            read_a += 1
        elif cb is not None and (ca is None or cb < ca):
            report.only_b.add(cb, show)
            b.advance()
        elif ca is not None:
            if a.digest != b.digest:
                report.different.add(ca, show)
            a.advance()
            b.advance()
            read_a += 1
        else:
            break  # both sides are at their end
        if progress is not None:
            progress(read_a)
    report.digest_a = a.archive.hexdigest()
    report.digest_b = b.archive.hexdigest()
    return report


__all__ = ["DEFAULT_SHOWN", "IdList", "VerifyReport", "compare_archives"]
