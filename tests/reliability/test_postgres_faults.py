"""PostgreSQL server faults: killed sessions, timeouts, an exhausted pool.

Each fault hits a backend in the middle of a deterministic workload. What must follow:
the call that met the fault fails with one clear line (a ``DatabaseError`` naming what
failed, where and what to do), never an error of the cleanup after it; nothing of its
bundle is left; the pool recovers (the next call works, on a new connection if the old
one died); and running the whole workload again ends with exactly the rows of a clean run.
"""

# ruff: noqa: E402 (the imports below need psycopg, checked first)
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from polylogue.errors import DatabaseError, OperationalError
from polylogue.storage.backends import create_backend
from polylogue.storage.backends.postgresql.backend import PostgresBackend
from polylogue.storage.records import AttachmentRecord, ConversationRecord, MessageRecord
from polylogue.storage.repository import StorageRepository
from tests.records import bundle
from tests.support_postgres import admin_execute, fresh_schema, server_url

Bundle = tuple[ConversationRecord, list[MessageRecord], list[AttachmentRecord]]
SHARED = "a-shared"
WORKLOAD: list[Bundle] = [bundle(f"c{i}", 4, (SHARED, f"a{i}")) for i in range(6)]
"""Six conversations that all refer to one shared attachment (and one of their own)."""
TABLES = {
    "conversations": "conversation_id",
    "messages": "message_id",
    "attachments": "attachment_id",
    "attachment_refs": "ref_id",
}
WAIT = 10.0
"""Seconds to wait for the server to show a session blocked or gone."""


def save(repo: StorageRepository, bundles: list[Bundle]) -> None:
    for conv, messages, attachments in bundles:
        repo.save_conversation(conversation=conv, messages=messages, attachments=attachments)


def snapshot(schema: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: admin_execute(f'SELECT * FROM "{schema}".{table} ORDER BY {key}')
        for table, key in TABLES.items()
    }


@pytest.fixture(scope="module")
def clean_run() -> dict[str, list[tuple[Any, ...]]]:
    """The rows the workload leaves when nothing goes wrong."""
    with fresh_schema() as schema, create_backend(f"{server_url()}?schema={schema}") as backend:
        save(StorageRepository(backend), WORKLOAD)
        return snapshot(schema)


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def open_backend(schema: str, options: str = "", **kwargs: Any) -> tuple[PostgresBackend, str]:
    """A backend whose sessions carry an application_name of their own (to find them).

    ``options`` go into the URL as a user writes them; ``kwargs`` to the constructor.
    """
    app = f"polylogue-fault-{uuid.uuid4().hex[:8]}"
    url = f"{server_url()}?application_name={app}{options}"
    if kwargs:
        return PostgresBackend(url, schema=schema, **kwargs), app
    backend = create_backend(f"{url}&schema={schema}")
    assert isinstance(backend, PostgresBackend)
    return backend, app


def wait_for(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def holding_row(schema: str, table: str, key: str, value: str) -> Iterator[int]:
    """Lock one row from another session (its pid is yielded) until the block ends."""
    with psycopg.connect(server_url()) as admin:
        admin.execute(f'SELECT 1 FROM "{schema}".{table} WHERE {key} = %s FOR UPDATE', (value,))
        try:
            yield admin.info.backend_pid
        finally:
            admin.rollback()


def blocked_by(holder: int) -> int:
    rows = wait_for(
        f"a session blocked by {holder}",
        lambda: admin_execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (holder,)
        ),
    )
    return int(rows[0][0])


def in_thread(work: Callable[[], Any]) -> Callable[[], BaseException | None]:
    """Start ``work`` in a thread; the returned function joins it and gives its error."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    def join() -> BaseException | None:
        thread.join(WAIT * 3)
        assert not thread.is_alive()
        return failure[0] if failure else None

    return join


def assert_clear(error: BaseException | None, backend: PostgresBackend, *words: str) -> None:
    """One line naming the database and the cause; not the cleanup's error."""
    assert isinstance(error, OperationalError), repr(error)
    text = str(error)
    assert "\n" not in text and backend.describe() in text
    assert "rollback failed" not in text and "no transaction" not in text
    for word in words:
        assert word in text, (word, text)


def assert_bundle_absent(schema: str, conv: ConversationRecord) -> None:
    cid = conv.conversation_id
    for table in ("conversations", "messages", "attachment_refs"):
        rows = admin_execute(f'SELECT 1 FROM "{schema}".{table} WHERE conversation_id = %s', (cid,))
        assert rows == [], f"{table} kept rows of the failed bundle {cid}"


def test_session_killed_mid_bundle(schema: str, clean_run: dict[str, Any]) -> None:
    backend, _app = open_backend(schema)
    with backend:
        repo = StorageRepository(backend)
        save(repo, WORKLOAD[:3])
        victim = WORKLOAD[3]
        # The bundle's conversation and messages are written, then it waits for the
        # shared attachment's row: its session is killed in the middle of the bundle.
        with holding_row(schema, "attachments", "attachment_id", SHARED) as holder:
            join = in_thread(lambda: save(repo, [victim]))
            admin_execute("SELECT pg_terminate_backend(%s)", (blocked_by(holder),))
            error = join()
        assert_clear(error, backend, "connection to the server was lost")
        # The server's words: its FATAL message, or, when the bundle was pipelined and
        # the socket closed before libpq read that message, libpq's own.
        text = str(error)
        assert "terminating connection" in text or "server closed the connection" in text, text
        assert not backend.in_transaction
        assert_bundle_absent(schema, victim[0])
        assert backend.get_conversation("c0") is not None  # the pool recovered
        save(repo, WORKLOAD)
    assert snapshot(schema) == clean_run


def test_idle_pooled_sessions_killed_are_replaced(schema: str, clean_run: dict[str, Any]) -> None:
    backend, app = open_backend(schema, "&pool_min_size=2")
    with backend:
        repo = StorageRepository(backend)
        save(repo, WORKLOAD[:2])
        sessions = [
            row[0]
            for row in admin_execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
            )
        ]
        assert sessions
        for pid in sessions:
            admin_execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_for(
            "the killed sessions to end",
            lambda: (
                not admin_execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (sessions,))
            ),
        )
        # No error at all: a dead idle connection is found when borrowed and replaced.
        assert backend.get_conversation("c1") is not None
        save(repo, WORKLOAD)
        assert backend.pool.get_stats().get("connections_lost", 0) >= 1
    assert snapshot(schema) == clean_run


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("statement_timeout", ["statement timeout", "raise statement_timeout"]),
        ("lock_timeout", ["lock timeout", "raise lock_timeout"]),
    ],
)
def test_timeouts_set_in_the_url(
    schema: str, clean_run: dict[str, Any], setting: str, words: list[str]
) -> None:
    backend, _app = open_backend(schema, f"&options=-c {setting}=300")
    with backend:
        with backend._reading("test") as conn:
            assert conn.execute(f"SHOW {setting}").fetchone() == {setting: "300ms"}
        repo = StorageRepository(backend)
        save(repo, WORKLOAD[:3])
        with holding_row(schema, "attachments", "attachment_id", SHARED):
            started = time.monotonic()
            with pytest.raises(DatabaseError) as timed_out:
                save(repo, [WORKLOAD[3]])
            waited = time.monotonic() - started
        assert 0.3 <= waited < WAIT
        assert_clear(timed_out.value, backend, *words)
        assert_bundle_absent(schema, WORKLOAD[3][0])
        save(repo, WORKLOAD)
    assert snapshot(schema) == clean_run


def test_exhausted_pool(schema: str, clean_run: dict[str, Any]) -> None:
    backend, _app = open_backend(schema, pool_min_size=1, pool_max_size=1, pool_timeout=0.5)
    with backend:
        repo = StorageRepository(backend)
        save(repo, WORKLOAD[:1])
        pinned = threading.Event()
        release = threading.Event()

        def hold_the_only_connection() -> None:
            with backend.transaction():
                backend.save_conversation(WORKLOAD[1][0])
                pinned.set()
                assert release.wait(WAIT)

        join = in_thread(hold_the_only_connection)
        assert pinned.wait(WAIT)
        started = time.monotonic()
        with pytest.raises(DatabaseError) as exhausted:
            backend.get_messages("c0")
        waited = time.monotonic() - started
        release.set()
        assert join() is None
        assert 0.5 <= waited < WAIT
        assert_clear(exhausted.value, backend, "couldn't get a connection", "pool_max_size")
        assert len(backend.get_messages("c0")) == 4  # the pool serves again
        save(repo, WORKLOAD)
    assert snapshot(schema) == clean_run
