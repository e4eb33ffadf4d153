"""Where a bulk import's time goes: wall and CPU time per named query, and the rest.

    python -m bench.shares --backend duckdb                       # 100,000 messages
    python -m bench.shares --backend duckdb --messages 1000000 --batch-size 2000

``StorageRepository.save_many`` of the bench workload (built in memory first, as the
harness does) into a new database, with every query the bulk path runs timed where the
binding calls it, and ``BEGIN``/``COMMIT`` (DuckDB checkpoints inside ``COMMIT``). "rest"
is the binding's own Python: checks, parameters, planning refs. PostgreSQL queues a
batch's statements in a pipeline, where a call's time is not its statement's: here it runs
them one at a time instead (pipeline mode off), so each call's time is its statement's
server time plus a round trip, and the total is slower than a real import.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from typing import Any

from bench.backends import open_fresh
from bench.workload import Workload
from polylogue.storage.repository import DEFAULT_BATCH_SIZE, StorageRepository

BULK_QUERIES = (
    "upsert_conversations",
    "upsert_messages",
    "classify_messages",
    "insert_messages",
    "update_changed_messages",
    "prune_attachment_refs",
    "prune_attachment_refs_many",
    "upsert_attachments",
    "insert_attachment_refs",
    "refresh_ref_counts",
    "delete_unreferenced_attachments",
)


class Clock:
    """Wall and CPU seconds and calls, per name."""

    def __init__(self) -> None:
        self.wall: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.cpu: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def timing(self, name: str, call: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                result = call(*args, **kwargs)
                # A select returns a generator: its rows are the statement's work.
                return result if isinstance(result, int | type(None)) else list(result)
            finally:
                self.wall[name] += time.perf_counter() - wall
                self.cpu[name] += time.process_time() - cpu
                self.calls[name] += 1

        return timed


class TimedQuery:
    """A loaded query whose calls are timed; everything else is the query's."""

    def __init__(self, query: Any, call: Any) -> None:
        self._query, self._call = query, call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._query, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shares", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "duckdb", "postgres"), default="duckdb")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args(argv)
    bundles = list(Workload(args.messages).bundles())
    count = sum(len(messages) for _, messages, _ in bundles)
    clock = Clock()
    if args.backend == "postgres":
        import psycopg

        # Statements one at a time: see the module's docstring.
        psycopg.Pipeline.is_supported = lambda: False  # type: ignore[method-assign]
    with (
        tempfile.TemporaryDirectory() as workdir,
        open_fresh(args.backend, workdir, args.postgres_url) as backend,
    ):
        for name in BULK_QUERIES:
            query = getattr(backend.queries, name, None)
            if query is not None:
                setattr(backend.queries, name, TimedQuery(query, clock.timing(name, query)))
        execute_verb = backend._execute_verb

        def timed_verb(conn: Any, verb: str) -> None:
            clock.timing(verb.split()[0], execute_verb)(conn, verb)

        backend._execute_verb = timed_verb  # type: ignore[method-assign]
        repo = StorageRepository(backend)
        wall, cpu = time.perf_counter(), time.process_time()
        repo.save_many(bundles, batch_size=args.batch_size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{args.backend}, {count:,} messages, batches of {args.batch_size}: {wall:.1f} s"
        f" ({count / wall:,.0f} msg/s), CPU {cpu:.1f} s"
    )
    print("| step | wall s | share | CPU s | calls |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds in sorted(clock.wall.items(), key=lambda item: -item[1]):
        cells = f"{seconds:.2f} | {seconds / wall:.0%} | {clock.cpu[name]:.2f}"
        print(f"| {name} | {cells} | {clock.calls[name]} |")
    rest, rest_cpu = wall - sum(clock.wall.values()), cpu - sum(clock.cpu.values())
    print(f"| rest (Python) | {rest:.2f} | {rest / wall:.0%} | {rest_cpu:.2f} | |")


if __name__ == "__main__":
    main()
