"""A one-line progress bar on stderr for long imports and exports.

Moving a large archive takes minutes; a rate and an ETA tell whether to wait. The bar is
drawn only on a terminal (never into a log or a pipe), redrawn at most ten times a
second, so that calling :meth:`Progress.update` once per line costs one clock read.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.1


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``import a.jsonl  42% 12.3 MB/29.0 MB  3.1 MB/s  ETA 0:05  1,234 bundles``.

    ``total_bytes`` None (standard input, a pipe): bytes, rate and bundles only.
    """

    def __init__(
        self,
        total_bytes: int | None,
        label: str,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self._out = stream if stream is not None else sys.stderr
        self._on = enabled and self._out.isatty()
        self._total = total_bytes
        self._label = label
        self._start = time.monotonic()
        self._next = self._start  # the first update draws at once
        self._width = shutil.get_terminal_size().columns - 1 if self._on else 0
        self._drawn = False

    def update(self, consumed_bytes: int, bundles: int) -> None:
        """Record progress; redraws when the last drawing is 0.1 s old."""
        if not self._on:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + REDRAW_SECONDS
        text = self.render(consumed_bytes, bundles, now - self._start)
        self._out.write("\r" + text[: self._width] + "\x1b[K")
        self._out.flush()
        self._drawn = True

    def render(self, consumed: int, bundles: int, elapsed: float) -> str:
        """The text of the bar ``elapsed`` seconds after the start (no control characters)."""
        rate = consumed / max(elapsed, 1e-9)
        parts = [self._label]
        if self._total:
            share = min(consumed / self._total, 1.0)
            parts.append(f"{share:4.0%} {_size(consumed)}/{_size(self._total)}")
        else:
            parts.append(_size(consumed))
        parts.append(f"{_size(rate)}/s")
        if self._total and rate > 0:
            parts.append("ETA " + _duration(max(self._total - consumed, 0) / rate))
        parts.append(f"{bundles:,} bundles")
        return "  ".join(parts)

    def close(self) -> None:
        """Clear the bar's line, leaving the cursor at its start."""
        if self._drawn:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._drawn = False
