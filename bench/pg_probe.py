"""Which PostgreSQL bulk path to keep: polylogue's numbers against plain COPY, same run.

    python -m bench.pg_probe [--messages 100000] [--repeat 3] [--postgres-url URL]

Every measurement runs on a fresh schema (created, migrated, dropped) with the bench
workload (20 messages per conversation, texts of 50-2,000 characters), and includes
turning records into parameters. Measured, median of ``--repeat`` alternating runs:

- reference: plain ``COPY`` of the rows a bulk import leaves (conversations, messages,
  attachment rows with their ``ref_count``, refs) into the empty tables;
- polylogue ``StorageRepository.save_many`` (the bulk import) and one bundle per
  transaction (``save_conversation``), and the raw-psycopg per-bundle reference (the same
  upserts, one transaction per bundle, no binding);
- the message upsert alone, batches of 10,000 rows, conversations already loaded:
  (a) row-wise ``executemany`` (psycopg pipelines it), (b) what polylogue does: columnar
  ``INSERT ... SELECT FROM unnest(arrays)`` (``sql/postgresql/messages.sql``), sent in
  chunks of ``PIPELINE_CHUNK`` rows through psycopg's pipeline mode, (c) ``COPY`` into a
  temporary staging table plus one set-based upsert, (d) reading which ids are stored,
  then ``COPY`` of the new messages only, (e) ``COPY`` into the staging table plus
  polylogue's own upsert reading from it, and plain COPY of the same rows;
- polylogue's message upsert built up clause by clause (``upsert_variants``): a plain
  ``INSERT ... SELECT FROM unnest`` with no conflict clause, then ``ON CONFLICT DO
  NOTHING``, then polylogue's ``DO UPDATE`` with ``RETURNING``, then the ``ORDER BY``
  that fixes the lock order; (b) adds the ``NOT EXISTS`` skip of unchanged rows.

The alternative statements live in ``bench/pg_probe.sql``; the clause-by-clause variants
are cut from polylogue's loaded ``upsert_messages`` (``upsert_variants``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosql
from psycopg.rows import tuple_row

from bench.measure import cpu_seconds
from bench.workload import Workload
from polylogue.storage import rows
from polylogue.storage.backends.base import QUERIES
from polylogue.storage.backends.postgresql.backend import PostgresBackend
from polylogue.storage.backends.postgresql.pipelined import _chunks
from polylogue.storage.backends.postgresql.values import store_parameters
from polylogue.storage.repository import Bundle, StorageRepository

PROBE_SQL = aiosql.from_path(Path(__file__).with_name("pg_probe.sql"), "psycopg")
# The column order of the upserts, as the binding declares it.
MESSAGE_COLUMNS = QUERIES["upsert_messages"].params
CONVERSATION_COLUMNS = QUERIES["upsert_conversations"].params
ATTACHMENT_COLUMNS = (*QUERIES["upsert_attachments"].params, "ref_count")
REF_COLUMNS = QUERIES["insert_attachment_refs"].params
BATCH = 10_000


@contextmanager
def fresh(url: str) -> Iterator[PostgresBackend]:
    backend = PostgresBackend(url, schema=f"bench_probe_{uuid.uuid4().hex[:10]}")
    try:
        yield backend
    finally:
        with backend.pool.connection() as conn:
            PROBE_SQL.drop_current_schema(conn)
        backend.close()


def timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def copy_rows(
    conn: Any, sql: str, params: Sequence[dict[str, Any]], columns: Sequence[str]
) -> None:
    with conn.cursor().copy(sql) as copy:
        for p in params:
            copy.write_row([p[c] for c in columns])


def message_params(bundles: Sequence[Bundle]) -> list[dict[str, Any]]:
    return [rows.message_params(m) for _, ms, _ in bundles for m in ms]


def conversation_params(bundles: Sequence[Bundle]) -> list[dict[str, Any]]:
    return [rows.conversation_params(c) for c, _, _ in bundles]


# -- whole imports --------------------------------------------------------------------


def plain_copy(url: str, bundles: Sequence[Bundle]) -> float:
    with fresh(url) as backend, backend.pool.connection() as conn:

        def work() -> None:
            conn.execute("BEGIN")
            copy_rows(
                conn,
                PROBE_SQL.copy_conversations.sql,
                conversation_params(bundles),
                CONVERSATION_COLUMNS,
            )
            copy_rows(conn, PROBE_SQL.copy_messages.sql, message_params(bundles), MESSAGE_COLUMNS)
            attachments, refs = attachment_rows(bundles)
            copy_rows(conn, PROBE_SQL.copy_attachments.sql, attachments, ATTACHMENT_COLUMNS)
            copy_rows(conn, PROBE_SQL.copy_attachment_refs.sql, refs, REF_COLUMNS)
            conn.execute("COMMIT")

        return timed(work)


def attachment_rows(
    bundles: Sequence[Bundle],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The attachment rows and refs a bulk import leaves: one row per attachment, each
    column its last non-NULL value, ``ref_count`` its distinct refs; one ref per ref id."""
    attachments: dict[str, dict[str, Any]] = {}
    refs: dict[str, dict[str, Any]] = {}
    for _, _, records in bundles:
        for record in records:
            row = attachments.setdefault(record.attachment_id, {"ref_count": 0})
            for key, value in rows.attachment_params(record).items():
                if value is not None or key not in row:
                    row[key] = value
            refs.setdefault(record.ref_id, rows.ref_params(record))
    for ref in refs.values():
        attachments[ref["attachment_id"]]["ref_count"] += 1
    return list(attachments.values()), list(refs.values())


def save_many(url: str, bundles: Sequence[Bundle]) -> float:
    with fresh(url) as backend:
        repo = StorageRepository(backend)
        return timed(lambda: repo.save_many(bundles))


def per_bundle(url: str, bundles: Sequence[Bundle]) -> float:
    with fresh(url) as backend:
        repo = StorageRepository(backend)

        def work() -> None:
            for conversation, messages, attachments in bundles:
                repo.save_conversation(
                    conversation=conversation, messages=messages, attachments=attachments
                )

        return timed(work)


def raw_per_bundle(url: str, bundles: Sequence[Bundle]) -> float:
    """psycopg alone: the same upserts of the same rows (conversation, messages, attachment
    rows and refs), one transaction per bundle; no pruning or ref counting."""
    with fresh(url) as backend, backend.pool.connection() as conn:
        conversation_sql = PROBE_SQL.upsert_conversation_row.sql
        message_sql = PROBE_SQL.upsert_messages_rowwise.sql
        attachment_sql = backend.queries.upsert_attachments.sql
        ref_sql = backend.queries.insert_attachment_refs.sql

        def columns(params: list[dict[str, Any]]) -> dict[str, list[Any]]:
            return {key: [p[key] for p in params] for key in params[0]}

        def work() -> None:
            for conversation, messages, attachments in bundles:
                conn.execute("BEGIN")
                conn.execute(conversation_sql, rows.conversation_params(conversation))
                conn.cursor().executemany(message_sql, [rows.message_params(m) for m in messages])
                if attachments:
                    conn.execute(
                        attachment_sql, columns([rows.attachment_params(a) for a in attachments])
                    )
                    conn.execute(ref_sql, columns([rows.ref_params(a) for a in attachments]))
                conn.execute("COMMIT")

        return timed(work)


def same_statements_per_bundle(url: str, bundles: Sequence[Bundle]) -> float:
    """psycopg alone sending what polylogue sends for one bundle per transaction: the
    same statements (the upserts, the prune, the ref recount), the same stored-form
    parameters, in one pipeline with ``BEGIN`` and ``COMMIT``, waiting where polylogue
    waits. What is left between this and polylogue is the binding's own Python (the
    repository, the bundle check, planning refs, transaction bookkeeping)."""
    with fresh(url) as backend, backend.pool.connection() as conn:
        queries = backend.queries
        conn.autocommit = True

        def send(sql: str, params: list[dict[str, Any]], row_factory: Any = None) -> Any:
            columns = {key: [p[key] for p in params] for key in params[0]}
            cursor = conn.cursor(row_factory=row_factory)
            cursor.execute(sql, store_parameters(columns))
            return cursor

        def work() -> None:
            for conversation, messages, attachments in bundles:
                cid = conversation.conversation_id
                with conn.pipeline() as pipeline:
                    conn.execute("BEGIN")
                    send(queries.upsert_conversations.sql, [rows.conversation_params(conversation)])
                    send(
                        queries.upsert_messages.sql,
                        [rows.message_params(m) for m in messages],
                        tuple_row,
                    )
                    pruned = conn.cursor()
                    pruned.execute(
                        queries.prune_attachment_refs.sql,
                        store_parameters(
                            {
                                "conversation_id": cid,
                                "keep_ref_ids": rows.dump_json([a.ref_id for a in attachments]),
                            }
                        ),
                    )
                    pruned.fetchall()
                    if attachments:
                        send(
                            queries.upsert_attachments.sql,
                            [rows.attachment_params(a) for a in attachments],
                        )
                        refs = send(
                            queries.insert_attachment_refs.sql,
                            [rows.ref_params(a) for a in attachments],
                        )
                        pipeline.sync()
                        if refs.rowcount:
                            ids = sorted({a.attachment_id for a in attachments})
                            send(
                                queries.refresh_ref_counts.sql,
                                [{"attachment_id": a} for a in ids],
                            )
                    conn.execute("COMMIT")

        return timed(work)


# -- the message upsert alone -----------------------------------------------------------


def upsert_variants(backend: PostgresBackend) -> dict[str, str]:
    """polylogue's ``upsert_messages`` taken apart, to price each clause it adds to a plain
    ``INSERT ... SELECT FROM unnest``, and put together again over the staging table (e):
    cut from the loaded text, so they stay that query. The pieces are cumulative, each
    one clause more than the one before, and go out as polylogue sends its statement
    (:func:`send_in_chunks`); the query itself, with its ``NOT EXISTS`` skip of unchanged
    rows, is variant (b)."""
    sql = backend.queries.upsert_messages.sql
    source_ends = sql.index("WHERE\n    NOT EXISTS")
    insert = sql[:source_ends]
    unnest = sql.index("FROM\n    unnest(")
    upsert = sql[sql.index("ON CONFLICT") :]
    ordered = sql[sql.index("ORDER BY u.message_id") :]
    return {
        "insert": insert,
        "do_nothing": insert + "ON CONFLICT (message_id) DO NOTHING",
        "do_update": insert + upsert,
        "ordered": insert + ordered,
        # (e): the whole statement, reading the rows from the staging table instead.
        "staging_contract": sql[:unnest] + "FROM messages_staging AS u\n" + sql[source_ends:],
    }


def send_in_chunks(
    backend: PostgresBackend, conn: Any, sql: str, params: list[dict[str, Any]]
) -> None:
    """Send ``sql`` over ``params`` as ``PipelinedWrites._send`` sends a batch: rows in
    id order, ``PIPELINE_CHUNK`` at a time, in one pipeline; read what comes back."""
    params = sorted(params, key=itemgetter("message_id"))
    with conn.pipeline():
        sent = [backend._adapter.send(conn, sql, chunk) for chunk in _chunks(params)]
    for _, cursor in sent:
        if cursor.description:
            cursor.fetchall()


def messages_only(url: str, bundles: Sequence[Bundle], variant: str) -> float:
    with fresh(url) as backend, backend.pool.connection() as conn:
        conn.execute("BEGIN")
        copy_rows(
            conn,
            PROBE_SQL.copy_conversations.sql,
            conversation_params(bundles),
            CONVERSATION_COLUMNS,
        )
        conn.execute("COMMIT")
        records = [m for _, ms, _ in bundles for m in ms]
        batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
        variants = upsert_variants(backend)

        def work() -> None:
            for batch in batches:
                params = [rows.message_params(m) for m in batch]
                conn.execute("BEGIN")
                if variant == "copy":
                    copy_rows(conn, PROBE_SQL.copy_messages.sql, params, MESSAGE_COLUMNS)
                elif variant == "executemany":
                    conn.cursor().executemany(PROBE_SQL.upsert_messages_rowwise.sql, params)
                elif variant == "columnar":
                    backend._write_messages(conn, params)
                elif variant == "classify_copy":
                    stored = [store_parameters(p) for p in params]
                    found = PROBE_SQL.stored_messages(
                        conn, message_id=[p["message_id"] for p in stored]
                    )
                    known = {row["message_id"] for row in found}
                    new = [p for p in stored if p["message_id"] not in known]
                    new.sort(key=itemgetter("message_id"))
                    copy_rows(conn, PROBE_SQL.copy_messages.sql, new, MESSAGE_COLUMNS)
                elif variant == "staging":
                    PROBE_SQL.create_staging(conn)
                    copy_rows(conn, PROBE_SQL.copy_staging.sql, params, MESSAGE_COLUMNS)
                    PROBE_SQL.upsert_from_staging(conn)
                elif variant == "staging_contract":
                    stored = [store_parameters(p) for p in params]
                    PROBE_SQL.create_staging(conn)
                    copy_rows(conn, PROBE_SQL.copy_staging.sql, stored, MESSAGE_COLUMNS)
                    conn.execute(variants["staging_contract"]).fetchall()
                else:
                    send_in_chunks(backend, conn, variants[variant], params)
                conn.execute("COMMIT")

        return timed(work)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_probe", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POLYLOGUE_BENCH_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    args = parser.parse_args(argv)
    bundles = list(Workload(args.messages).bundles())
    count = sum(len(b[1]) for b in bundles)
    url = args.postgres_url
    scenarios: dict[str, Callable[[], float]] = {
        "plain COPY of the same rows (reference)": lambda: plain_copy(url, bundles),
        "polylogue save_many (default batch)": lambda: save_many(url, bundles),
        "polylogue one bundle per transaction": lambda: per_bundle(url, bundles),
        "raw psycopg, one bundle per transaction": lambda: raw_per_bundle(url, bundles),
        "psycopg alone, polylogue's statements, one bundle per transaction": lambda: (
            same_statements_per_bundle(url, bundles)
        ),
        "messages only: plain COPY": lambda: messages_only(url, bundles, "copy"),
        "messages only: (a) executemany, row-wise": lambda: messages_only(
            url, bundles, "executemany"
        ),
        "messages only: (b) columnar unnest (polylogue)": lambda: messages_only(
            url, bundles, "columnar"
        ),
        "messages only: (c) COPY to staging + upsert": lambda: messages_only(
            url, bundles, "staging"
        ),
        "messages only: (d) stored ids read, then COPY of the new": lambda: messages_only(
            url, bundles, "classify_copy"
        ),
        "messages only: (e) COPY to staging + polylogue's upsert": lambda: messages_only(
            url, bundles, "staging_contract"
        ),
        "messages only: piece 1, INSERT from unnest, no conflict clause": lambda: messages_only(
            url, bundles, "insert"
        ),
        "messages only: piece 2, + ON CONFLICT DO NOTHING": lambda: messages_only(
            url, bundles, "do_nothing"
        ),
        "messages only: piece 3, + polylogue's DO UPDATE and RETURNING": lambda: messages_only(
            url, bundles, "do_update"
        ),
        "messages only: piece 4, + ORDER BY message id (lock order)": lambda: messages_only(
            url, bundles, "ordered"
        ),
    }
    if args.only:
        reference_names = [n for n in scenarios if "plain COPY" in n]
        scenarios = {
            n: run for n, run in scenarios.items() if args.only in n or n in reference_names
        }
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios}
    print(f"{count:,} messages in {len(bundles):,} conversations, {args.repeat} runs each")
    for _ in range(args.repeat):
        for name, run in scenarios.items():
            before = cpu_seconds()
            samples[name].append(count / run())
            after = cpu_seconds()
            # Per 1,000 messages; the run's setup (schema, migrations) is included.
            spent = [(a - b) * 1e6 / count for a, b in zip(after, before, strict=True)]
            cpu[name].append((spent[0], spent[1]))
    reference = statistics.median(samples["plain COPY of the same rows (reference)"])
    messages_reference = statistics.median(samples["messages only: plain COPY"])
    print("| scenario | msg/s (median) | × COPY | runs | CPU ms per 1k msgs: here / server |")
    print("| --- | ---: | ---: | --- | ---: |")
    for name, values in samples.items():
        base = messages_reference if name.startswith("messages only") else reference
        median = statistics.median(values)
        runs = ", ".join(f"{v:,.0f}" for v in values)
        client = statistics.median(c for c, _ in cpu[name])
        server = statistics.median(s for _, s in cpu[name])
        cpu_text = f"{client:.1f} / {server:.1f}"
        print(f"| {name} | {median:,.0f} | {median / base:.2f} | {runs} | {cpu_text} |")


if __name__ == "__main__":
    main()
