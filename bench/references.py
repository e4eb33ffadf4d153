"""Raw-driver references: the same rows written and read without polylogue's binding.

Each reference runs the dialect's own upsert statement (the text aiosql loaded from
``sql/<dialect>/``), so the ratio measures what the binding, the repository and their
bookkeeping cost on top of the driver — not a different SQL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polylogue.storage import rows
from polylogue.storage.repository import Bundle


def _params(
    bundles: Sequence[Bundle],
) -> list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]]:
    return [
        (
            rows.conversation_params(c),
            [rows.message_params(m) for m in ms],
            [rows.attachment_params(a) for a in atts],
            [rows.ref_params(a) for a in atts],
        )
        for c, ms, atts in bundles
    ]


def sqlite_executemany(backend: Any, bundles: Sequence[Bundle], *, per_bundle: bool) -> float:
    """sqlite3 ``executemany`` upserts of the same rows (conversation, messages, attachment
    rows and refs): one transaction per bundle, or one for all. No ref counting or pruning:
    that bookkeeping is polylogue's own work."""
    queries = backend.queries
    conversation_sql = queries.upsert_conversations.sql
    message_sql = queries.upsert_messages.sql
    attachment_sql = queries.upsert_attachments.sql
    ref_sql = queries.insert_attachment_refs.sql
    conn = backend._thread_connection()
    count = sum(len(b[1]) for b in bundles)
    start = time.perf_counter()
    # Turning records into parameters is part of the work a raw-driver user does too.
    prepared = _params(bundles)

    def write(conversation: Any, messages: Any, attachments: Any, refs: Any) -> None:
        conn.execute(conversation_sql, conversation)
        conn.executemany(message_sql, messages)
        if attachments:
            conn.executemany(attachment_sql, attachments)
            conn.executemany(ref_sql, refs)

    if per_bundle:
        for bundle in prepared:
            conn.execute("BEGIN IMMEDIATE")
            write(*bundle)
            conn.execute("COMMIT")
    else:
        conn.execute("BEGIN IMMEDIATE")
        for bundle in prepared:
            write(*bundle)
        conn.execute("COMMIT")
    return count / (time.perf_counter() - start)


def sqlite_get_messages(backend: Any) -> Any:
    """A function fetching one conversation's rows with the same SQL, raw sqlite3."""
    sql = backend.queries.get_messages.sql
    conn = backend._thread_connection()

    def fetch(conversation_id: str) -> list[Any]:
        return conn.execute(sql, {"conversation_id": conversation_id}).fetchall()

    return fetch


def measure(
    backend_name: str, kind: str, bundles: Sequence[Bundle], workdir: str, postgres_url: str | None
) -> tuple[float, str] | None:
    """The raw reference for ``kind`` ("per_bundle" or "bulk") on a fresh database."""
    from bench.backends import open_fresh

    if backend_name == "sqlite":
        with open_fresh("sqlite", workdir) as backend:
            per_bundle = kind == "per_bundle"
            rate = sqlite_executemany(backend, bundles, per_bundle=per_bundle)
        label = "txn per bundle" if per_bundle else "one txn"
        return rate, f"sqlite3 executemany, {label}"
    if backend_name == "postgres" and postgres_url:
        from bench import pg_probe

        count = sum(len(b[1]) for b in bundles)
        if kind == "per_bundle":
            seconds = pg_probe.raw_per_bundle(postgres_url, bundles)
            return count / seconds, "psycopg executemany (pipelined), txn per bundle"
        seconds = pg_probe.plain_copy(postgres_url, bundles)
        return count / seconds, "psycopg COPY of the same rows, empty tables"
    if backend_name == "duckdb":
        if kind == "bulk":
            return duckdb_unnest(
                bundles, workdir
            ), "duckdb INSERT … SELECT unnest, 1,000 bundles/stmt"
        rate = duckdb_executemany(bundles, workdir)
        return rate, f"duckdb executemany, first {EXECUTEMANY_CAP:,} rows, extrapolated"
    return None


EXECUTEMANY_CAP = 2_000
"""Rows the DuckDB executemany reference writes (it runs at a few hundred rows/s)."""


def duckdb_unnest(bundles: Sequence[Bundle], workdir: str) -> float:
    """The issue's DuckDB reference: plain ``INSERT … SELECT unnest(list)`` per 1,000
    bundles (conversations and messages), one transaction each, no dedup checks."""
    from bench.backends import open_fresh

    with open_fresh("duckdb", workdir) as backend:
        queries = backend.queries
        conn = backend._acquire()
        count = sum(len(b[1]) for b in bundles)
        start = time.perf_counter()
        for first in range(0, len(bundles), 1_000):
            chunk = bundles[first : first + 1_000]
            conversations = [rows.conversation_params(c) for c, _m, _a in chunk]
            messages = [rows.message_params(m) for _c, ms, _a in chunk for m in ms]
            conn.execute("BEGIN TRANSACTION")
            conn.execute(queries.upsert_conversations.sql, _columns(conversations))
            conn.execute(queries.insert_messages.sql, _columns(messages))
            conn.execute("COMMIT")
        return count / (time.perf_counter() - start)


def duckdb_executemany(bundles: Sequence[Bundle], workdir: str) -> float:
    """Row-by-row ``executemany`` upserts, capped at :data:`EXECUTEMANY_CAP` rows."""
    import aiosql

    from bench.backends import open_fresh
    from polylogue.storage.backends.duckdb.adapter import DuckDBConnectionAdapter

    probe = aiosql.from_path(Path(__file__).with_name("duckdb_probe.sql"), DuckDBConnectionAdapter)
    with open_fresh("duckdb", workdir) as backend:
        conn = backend._acquire()
        taken = []
        for conversation, messages, _a in bundles:
            taken.append((conversation, messages))
            if sum(len(m) for _c, m in taken) >= EXECUTEMANY_CAP:
                break
        backend.save_conversations([c for c, _m in taken])
        params = [rows.message_params(m) for _c, ms in taken for m in ms]
        start = time.perf_counter()
        conn.execute("BEGIN TRANSACTION")
        conn.executemany(probe.upsert_message_row.sql, params)
        conn.execute("COMMIT")
        return len(params) / (time.perf_counter() - start)


def _columns(params: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {key: [row[key] for row in params] for key in params[0]}


def get_messages_function(backend_name: str, backend: Any) -> Any:
    """Fetch one conversation's messages with the driver alone, on one held connection."""
    if backend_name == "sqlite":
        return sqlite_get_messages(backend)
    if backend_name in ("postgres", "duckdb"):
        sql = backend.queries.get_messages.sql
        conn = backend._acquire()  # held for the benchmark; closed with the backend

        def fetch(conversation_id: str) -> list[Any]:
            return conn.execute(sql, {"conversation_id": conversation_id}).fetchall()

        return fetch
    return None
