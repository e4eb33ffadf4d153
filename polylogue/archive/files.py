"""Opening archive files for reading and writing, the same way for every command.

Input: ``-`` is standard input; gzip is recognised by its magic bytes (a renamed or piped
file still works); lines are read one at a time in bounded memory, and the bytes taken
from the underlying file are counted for a progress bar (the compressed size for gzip).

Output: ``-`` (or None) is standard output; a name ending in ``.gz`` is compressed. A file
is written as ``<name>.partial``, owner-only (0600: an archive holds private
conversations), and renamed onto its name only when writing finished without an error,
so an interrupted export never leaves a truncated file that looks complete.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any, cast

from polylogue.storage.private_files import FILE_MODE

STDIO = "-"
GZIP_MAGIC = b"\x1f\x8b"
PARTIAL_SUFFIX = ".partial"
READ_BUFFER = 1 << 16
GZIP_LEVEL = 6


class CountingReader(io.RawIOBase):
    """A raw reader over ``source`` that counts the bytes read from it in :attr:`consumed`.

    ``source`` is closed with the reader only when ``owned`` (standard input is not).
    """

    def __init__(self, source: IO[bytes], name: str, *, owned: bool) -> None:
        self._source = source
        self._owned = owned
        self.name = name
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._source.readinto(buffer)  # type: ignore[attr-defined]
        if count:
            self.consumed += count
        return int(count or 0)

    def close(self) -> None:
        if not self.closed and self._owned:
            self._source.close()
        super().close()


class ArchiveInput:
    """An open archive file: iterate it for its lines; :attr:`consumed` for progress."""

    def __init__(self, stream: IO[bytes], counter: CountingReader, *, compressed: bool) -> None:
        self.stream = stream
        self.name = counter.name
        self.compressed = compressed
        self._counter = counter

    @property
    def consumed(self) -> int:
        """Bytes taken from the underlying file so far (compressed bytes for gzip)."""
        return self._counter.consumed

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self.stream.readline(size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.stream)


@contextlib.contextmanager
def open_archive_input(path: str) -> Iterator[ArchiveInput]:
    """Open ``path`` (``-``: standard input, left open) for reading, gzip or plain.

    A missing or unreadable file raises ``OSError`` naming the path.
    """
    if path == STDIO:
        counter = CountingReader(sys.stdin.buffer, "<stdin>", owned=False)
    else:
        try:
            source = open(path, "rb", buffering=0)  # noqa: SIM115 (closed with counter)
        except OSError as exc:
            raise _named(exc, path, "cannot open") from exc
        counter = CountingReader(source, path, owned=True)
    buffered = io.BufferedReader(counter, READ_BUFFER)
    stream: IO[bytes] = buffered
    try:
        try:
            # peek, not read: standard input cannot be rewound
            compressed = buffered.peek(2)[:2] == GZIP_MAGIC
        except OSError as exc:
            raise _named(exc, counter.name, "cannot read") from exc
        if compressed:
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
        yield ArchiveInput(stream, counter, compressed=compressed)
    finally:
        # never replace the error that got us here; close the file even if gzip's close fails
        with contextlib.suppress(OSError):
            stream.close()
        with contextlib.suppress(OSError):
            buffered.close()


def _named(exc: OSError, path: str, what: str) -> OSError:
    """``exc`` again with a message that names ``path`` (same class, same errno)."""
    detail = exc.strerror or str(exc)
    error = type(exc)(exc.errno, f"{what} {path}: {detail}") if exc.errno else None
    return error if error is not None else OSError(f"{what} {path}: {detail}")


def iter_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, raw line with its b"\\n")``, one line in memory at a time.

    Splits on ``b"\\n"`` only (binary iteration). A gzip stream that is truncated or
    corrupt raises ``OSError`` naming the file and the last line read.
    """
    line_no = 0
    try:
        for line_no, raw in enumerate(stream, 1):
            yield line_no, raw
    except (OSError, EOFError, zlib.error) as exc:
        name = getattr(stream, "name", "<stream>")
        raise OSError(
            f"{name}: cannot read past line {line_no}: {exc} (is the file complete?)"
        ) from exc


def total_size(path: str) -> int | None:
    """Size in bytes of the file at ``path``; None for ``-``, pipes and devices."""
    if path == STDIO:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


@contextlib.contextmanager
def open_archive_output(path: str | None) -> Iterator[IO[bytes]]:
    """Open ``path`` for writing; None or ``-``: standard output (flushed, not closed).

    A name ending in ``.gz`` is gzip-compressed (deterministic bytes: no name, mtime 0).
    The data goes to ``<path>.partial`` (mode 0600), renamed onto ``path`` when the block
    ends without an exception and removed when it does not.
    """
    if path is None or path == STDIO:
        out = sys.stdout.buffer
        try:
            yield out
        finally:
            with contextlib.suppress(OSError):
                out.flush()
        return
    partial = path + PARTIAL_SUFFIX
    try:
        # Not create_private_file(): it creates missing folders, and it closes the file
        # it made; the file is opened once here, exclusively, already 0600.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        raise FileExistsError(
            f"{partial} exists: another export to {path} is running, or one was"
            " interrupted; remove it and try again"
        ) from None
    except OSError as exc:
        raise _named(exc, partial, "cannot create") from exc
    raw = os.fdopen(fd, "wb", buffering=READ_BUFFER)
    out_stream: IO[bytes] = raw
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600 even under a umask that took owner bits
        if path.endswith(".gz"):
            out_stream = cast(
                IO[bytes],
                gzip.GzipFile(
                    filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0
                ),
            )
        yield out_stream
        if out_stream is not raw:
            out_stream.close()  # writes the gzip trailer; leaves raw open
        raw.flush()
        os.fsync(fd)  # the rename must never publish data that is not on disk yet
        raw.close()
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            out_stream.close()
        with contextlib.suppress(OSError):
            raw.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


__all__ = [
    "ArchiveInput",
    "CountingReader",
    "iter_lines",
    "open_archive_input",
    "open_archive_output",
    "total_size",
]
