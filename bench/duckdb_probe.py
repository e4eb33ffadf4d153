"""DuckDB: bulk import speed and memory, the message write transport, stats() vs SQLite.

    python -m bench.duckdb_probe                      # 100,000 messages
    python -m bench.duckdb_probe --messages 1000000   # the issue's size
    python -m bench.duckdb_probe --only import,stats --batch-size 1000

Every database is new and lives in a temporary folder. Measured:

- import: ``StorageRepository.save_many`` of the bench workload (20 messages per
  conversation, texts of 50-2,000 characters mixing prose, CJK, emoji and code, 0-2
  attachments), streamed from its generator in a process of its own (DuckDB, and SQLite
  for comparison). The time the generator spends building records is measured and
  reported apart: "storage msg/s" is what the storage path does with records it is
  handed; "overall" includes building them. Peak RSS is the process's VmHWM.
- transports: the plain message insert of the large-batch path (``insert_messages``) over
  the same 10,000-row batches, parameters bound as one list per column (what polylogue
  does) against a temporary JSON file read with ``read_json`` (``bench/duckdb_probe.sql``),
  each including turning records into parameters and the commit.
- stats: ``stats()`` on the two imported archives, median of 5 after a warm-up; the two
  results must be equal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiosql

from bench.measure import peak_rss_mb
from bench.workload import Workload
from polylogue.storage import rows
from polylogue.storage.backends import SQLBackend, create_backend
from polylogue.storage.backends.duckdb.adapter import DuckDBConnectionAdapter
from polylogue.storage.backends.duckdb.backend import DuckDBBackend
from polylogue.storage.repository import DEFAULT_BATCH_SIZE, Bundle, StorageRepository

ROOT = Path(__file__).resolve().parent.parent
TRANSPORT_BATCH = 10_000
TRANSPORT_MAX_MESSAGES = 200_000


def _timed(bundles: Iterable[Bundle], spent: list[float]) -> Iterator[Bundle]:
    """``bundles``, adding the time spent producing each one to ``spent[0]``."""
    iterator = iter(bundles)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        spent[0] += time.perf_counter() - start
        yield item


def _url(backend: str, path: Path, memory_limit: str | None) -> str:
    if backend == "sqlite":
        return f"sqlite://{path}"
    return f"duckdb://{path}" + (f"?memory_limit={memory_limit}" if memory_limit else "")


def import_here(
    backend: str, messages: int, path: Path, batch_size: int, memory_limit: str | None
) -> dict[str, Any]:
    """Stream the workload into a new database at ``path`` (in this process)."""
    opened = create_backend(_url(backend, path, memory_limit))
    before = peak_rss_mb()
    building = [0.0]
    start = time.perf_counter()
    StorageRepository(opened).save_many(
        _timed(Workload(messages).bundles(), building), batch_size=batch_size
    )
    saved = time.perf_counter() - start
    start = time.perf_counter()
    opened.close()
    closing = time.perf_counter() - start
    return {
        "backend": backend,
        "messages": messages,
        "batch_size": batch_size,
        "memory_limit": memory_limit,
        "seconds": saved,
        "building_records_s": building[0],
        "close_s": closing,
        "storage_msg_s": messages / (saved - building[0]),
        "overall_msg_s": messages / saved,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_import_mb": before,
    }


def import_in_subprocess(
    backend: str, messages: int, path: Path, batch_size: int, memory_limit: str | None
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "bench.duckdb_probe",
        "--import-into",
        str(path),
        "--backend",
        backend,
        "--messages",
        str(messages),
        "--batch-size",
        str(batch_size),
    ]
    if memory_limit:
        command += ["--memory-limit", memory_limit]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def transports(messages: int, workdir: Path, repeat: int) -> dict[str, float]:
    """msg/s of the message insert per transport (median of ``repeat``, alternating)."""
    bundles = list(Workload(min(messages, TRANSPORT_MAX_MESSAGES)).bundles())
    records = [m for _c, ms, _a in bundles for m in ms]
    batches = [records[i : i + TRANSPORT_BATCH] for i in range(0, len(records), TRANSPORT_BATCH)]
    probe = aiosql.from_path(ROOT / "bench" / "duckdb_probe.sql", DuckDBConnectionAdapter)

    def lists(backend: DuckDBBackend, conn: Any, batch: list[Any]) -> None:
        params = [rows.message_params(m) for m in batch]
        backend.queries.insert_messages(conn, **{k: [p[k] for p in params] for k in params[0]})

    def json_file(backend: DuckDBBackend, conn: Any, batch: list[Any]) -> None:
        params = [rows.message_params(m) for m in batch]
        fd, name = tempfile.mkstemp(suffix=".json", dir=workdir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(params, out, ensure_ascii=False, separators=(",", ":"))
            probe.insert_messages_from_json(conn, rows_file=name)
        finally:
            os.unlink(name)

    ways: dict[str, Callable[[DuckDBBackend, Any, list[Any]], None]] = {
        "unnest(list per column)": lists,
        "read_json(temporary file)": json_file,
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for run in range(repeat):
        for way, (name, write) in enumerate(ways.items()):
            with DuckDBBackend(workdir / f"transport-{run}-{way}.duckdb") as db:
                db.save_conversations([c for c, _m, _a in bundles])
                conn = db._acquire()
                start = time.perf_counter()
                for batch in batches:
                    conn.execute("BEGIN TRANSACTION")
                    write(db, conn, batch)
                    conn.execute("COMMIT")
                samples[name].append(len(records) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def stats_times(paths: dict[str, Path]) -> dict[str, float]:
    """Median stats() seconds per backend; the results must agree."""
    times: dict[str, float] = {}
    results: list[Any] = []
    for name, path in paths.items():
        opened: SQLBackend = create_backend(_url(name, path, None), migrate=False)
        try:
            results.append(opened.stats())
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                opened.stats()
                runs.append(time.perf_counter() - start)
            times[name] = statistics.median(runs)
        finally:
            opened.close()
    if any(result != results[0] for result in results):
        raise AssertionError("stats() differ between the backends")
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.duckdb_probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--memory-limit", help="DuckDB memory_limit (default: the backend's)")
    parser.add_argument("--repeat", type=int, default=3, help="transport runs per side")
    parser.add_argument("--only", default="import,transports,stats")
    parser.add_argument("--import-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="duckdb", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.import_into:  # the child process of an import measurement
        result = import_here(
            args.backend, args.messages, args.import_into, args.batch_size, args.memory_limit
        )
        print(json.dumps(result))
        return
    wanted = set(args.only.split(","))
    lines = [f"### DuckDB probe: {args.messages:,} messages, batch {args.batch_size} bundles", ""]
    with tempfile.TemporaryDirectory(prefix="polylogue-duckdb-probe-") as folder:
        workdir = Path(folder)
        paths = {"duckdb": workdir / "archive.duckdb", "sqlite": workdir / "archive.db"}
        if wanted & {"import", "stats"}:
            lines += [
                "| import | storage msg/s | overall msg/s | peak RSS |",
                "| --- | ---: | ---: | ---: |",
            ]
            for name in ("duckdb", "sqlite"):
                got = import_in_subprocess(
                    name, args.messages, paths[name], args.batch_size, args.memory_limit
                )
                print(json.dumps(got), flush=True)
                lines.append(
                    f"| {name} | {got['storage_msg_s']:,.0f} | {got['overall_msg_s']:,.0f} |"
                    f" {got['peak_rss_mb']:,.0f} MB |"
                )
            lines.append("")
        if "transports" in wanted:
            rates = transports(args.messages, workdir, args.repeat)
            lines += ["| message insert transport | msg/s |", "| --- | ---: |"]
            lines += [f"| {name} | {rate:,.0f} |" for name, rate in rates.items()]
            lines.append("")
        if "stats" in wanted:
            took = stats_times(paths)
            lines += [
                "| stats() | ms |",
                "| --- | ---: |",
                *[f"| {name} | {seconds * 1000:,.1f} |" for name, seconds in took.items()],
                f"| DuckDB speed-up | {took['sqlite'] / took['duckdb']:.1f}× |",
                "",
            ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
