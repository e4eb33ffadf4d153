"""Does re-ingesting unchanged bundles into PostgreSQL slow down as the archive grows?

    python -m bench.pg_reingest [--messages 1000000] [--sample 500] [--rounds 3]

Bulk-imports the bench workload into a fresh schema, then re-saves a sample of its
bundles (spread over the whole archive), one bundle per transaction, ``--rounds`` times.
For each round: msg/s, time per bundle, CPU per 1,000 messages (this process / the
server's processes) and the buffer use of the messages table per bundle
(``pg_statio_user_tables``: blocks read from the operating system and found in shared
buffers, for the heap, its indexes and TOAST). The first round after the import reads
the sample's pages cold; the rounds after it show the steady cost.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from typing import Any

from bench.measure import cpu_seconds
from bench.pg_probe import PROBE_SQL, fresh
from bench.workload import Workload
from polylogue.storage.repository import Bundle, StorageRepository

STATS_SETTLE = 11.0
"""Seconds to wait before reading table statistics: a PostgreSQL 15+ backend reports its
counts at most once a second, and an idle one within 10 s, so the import's (or the
round's) late reports would otherwise land in the next reading."""


def buffer_use(backend: Any) -> dict[str, int]:
    with backend.pool.connection() as conn:
        PROBE_SQL.clear_statistics_snapshot(conn)
        found: dict[str, int] = PROBE_SQL.messages_buffer_use(conn)
        return found


def kept_every(step: int, bundles: Iterator[Bundle], kept: list[Bundle]) -> Iterator[Bundle]:
    """``bundles`` as they come, appending every ``step``-th to ``kept`` on the way: the
    sample is taken while the archive is imported, not by generating it twice."""
    for index, bundle in enumerate(bundles):
        if index % step == 0:
            kept.append(bundle)
        yield bundle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_reingest", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=500, help="bundles re-saved per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POLYLOGUE_BENCH_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    args = parser.parse_args(argv)
    with fresh(args.postgres_url) as backend:
        repo = StorageRepository(backend)
        step = max(1, args.messages // 20 // args.sample)
        sample: list[Bundle] = []
        started = time.perf_counter()
        repo.save_many(kept_every(step, Workload(args.messages).bundles(), sample))
        rate = args.messages / (time.perf_counter() - started)
        sample = sample[: args.sample]
        count = sum(len(messages) for _, messages, _ in sample)
        with backend.pool.connection() as conn:
            size = PROBE_SQL.messages_size(conn)
        print(
            f"{args.messages:,} messages imported ({rate:,.0f} msg/s with the workload's "
            f"generation), messages table {size / 2**20:,.0f} MB; re-saving {len(sample)} "
            f"bundles ({count:,} messages) per round\n"
        )
        print(
            "| round | msg/s | ms per bundle | CPU ms per 1k msgs: here / server | "
            "per bundle: heap read / hit, index read / hit, TOAST read / hit |"
        )
        print("| ---: | ---: | ---: | ---: | --- |")
        for round_number in range(1, args.rounds + 1):
            time.sleep(STATS_SETTLE)
            before, cpu_before = buffer_use(backend), cpu_seconds()
            started = time.perf_counter()
            for conversation, messages, attachments in sample:
                repo.save_conversation(
                    conversation=conversation, messages=messages, attachments=attachments
                )
            wall = time.perf_counter() - started
            cpu_after = cpu_seconds()
            time.sleep(STATS_SETTLE)
            after = buffer_use(backend)
            use = {key: (after[key] - before[key]) / len(sample) for key in after}
            spent = zip(cpu_after, cpu_before, strict=True)
            here, server = ((a - b) * 1e6 / count for a, b in spent)
            print(
                f"| {round_number} | {count / wall:,.0f} | {wall / len(sample) * 1e3:.2f} | "
                f"{here:.1f} / {server:.1f} | {use['heap_blks_read']:.1f} / "
                f"{use['heap_blks_hit']:.1f}, {use['idx_blks_read']:.1f} / "
                f"{use['idx_blks_hit']:.1f}, {use['toast_blks_read']:.1f} / "
                f"{use['toast_blks_hit']:.1f} |"
            )


if __name__ == "__main__":
    main()
