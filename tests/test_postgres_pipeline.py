"""What a bundle save sends to PostgreSQL, read from libpq's protocol trace.

A save with a transaction of its own sends ``BEGIN``, its statements and ``COMMIT`` in
one pipeline, waiting only where a result decides what comes next; inside a caller's
transaction it does not commit (``postgresql/pipelined.py``).
"""

# ruff: noqa: E402 (the imports below need psycopg, checked first)
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
from psycopg import pq

from polylogue.storage.backends import SQLBackend
from polylogue.storage.repository import StorageRepository
from tests.records import bundle
from tests.support_postgres import postgres_backend, require_server

PARSED = re.compile(r' "[^"]*" "(\w+)')


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SQLBackend]:
    """A backend whose one pooled connection writes libpq's protocol trace."""
    require_server()
    with postgres_backend(tmp_path, pool_min_size=1, pool_max_size=1) as opened:
        yield opened


@pytest.fixture
def trace(backend: SQLBackend) -> Iterator[TextIO]:
    with tempfile.TemporaryFile("w+") as file:
        with backend.pool.connection() as conn:  # type: ignore[attr-defined]
            conn.pgconn.trace(file.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        yield file
        with backend.pool.connection() as conn:  # type: ignore[attr-defined]
            conn.pgconn.untrace()


def sent(trace: TextIO, work: Callable[[], object]) -> list[str]:
    """What the client sent while ``work()`` ran: each statement's first word, and the
    points where it waited for the server (``Sync``, ``Flush``)."""
    trace.seek(0, os.SEEK_END)
    start = trace.tell()
    work()
    trace.seek(start)
    words = []
    for line in trace.read().splitlines():
        fields = line.split("\t")
        if fields[0] != "F" or len(fields) < 3:
            continue  # a message from the server, or a statement's next line
        if fields[2] == "Parse":  # F, length, Parse, then: "name" "statement ..."
            words.append(PARSED.match(fields[3]).group(1))  # type: ignore[union-attr]
        elif fields[2] in ("Sync", "Flush"):
            words.append(fields[2])
    return words


def test_a_bundle_of_its_own_sends_begin_and_commit_in_its_pipeline(
    backend: SQLBackend, trace: TextIO
) -> None:
    repo = StorageRepository(backend)
    conversation, messages, attachments = bundle("c1", 3, ("a1",))

    def save() -> None:
        repo.save_conversation(
            conversation=conversation, messages=messages, attachments=attachments
        )

    first = sent(trace, save)
    assert first[:4] == ["BEGIN", "INSERT", "INSERT", "DELETE"]  # no wait after BEGIN
    assert first[-3:] == ["COMMIT", "Sync", "Flush"]  # the pipeline's end
    # Waits: the prune's rows, the new refs' count, the end with the commit.
    assert [w for w in first if w in ("Sync", "Flush")] == ["Flush", "Sync", "Sync", "Flush"]
    assert first.count("COMMIT") == 1
    again = sent(trace, save)
    assert again[0] == "BEGIN" and again[-3:] == ["COMMIT", "Sync", "Flush"]
    assert backend.get_messages("c1") == messages


def test_a_bundle_in_a_callers_transaction_does_not_commit_it(
    backend: SQLBackend, trace: TextIO
) -> None:
    repo = StorageRepository(backend)
    conversation, messages, attachments = bundle("c1", 3, ("a1",))
    backend.begin()
    try:
        words = sent(
            trace,
            lambda: repo.save_conversation(
                conversation=conversation, messages=messages, attachments=attachments
            ),
        )
    finally:
        backend.rollback()
    # psycopg begins the caller's transaction with its first statement; nothing ends it.
    assert words[:3] == ["BEGIN", "Sync", "INSERT"]
    assert "COMMIT" not in words
    assert backend.get_conversation("c1") is None
