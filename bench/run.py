"""Run every scenario for every available backend and report against the raw driver.

    python -m bench                       # 100,000 messages, SQLite (+ DuckDB, + PostgreSQL)
    python -m bench --quick               # 10,000 messages: a smoke test of the harness
    python -m bench --messages 1000000    # the large run
    python -m bench --postgres-url postgresql://postgres@127.0.0.1:5432/postgres

Prints a Markdown table per backend and writes bench/results/<date>-<backend>.md and .json.
It measures; it never fails because the machine was slow.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import references
from bench.backends import available, fresh_database, open_fresh
from bench.measure import cpu_seconds, throughput
from bench.workload import Workload
from polylogue.storage.repository import Bundle, StorageRepository

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One line of the table: what polylogue did, what the reference did, the target."""

    scenario: str
    value: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    target: str = ""
    met: bool | None = None
    paired_ratio: float | None = None
    """Median of the per-repetition ratios (each polylogue run next to its raw run)."""

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.reference in (None, 0):
            return None
        assert self.reference is not None
        if self.unit == "msg/s":
            return self.value / self.reference
        return self.value / self.reference  # latency: lower is better, ratio = ours / raw


@dataclass
class Report:
    backend: str
    messages: int
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.scenario}: {row.value:,.2f} {row.unit}", flush=True)
        return row


def machine() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "aiosql": version("aiosql"),
        "pydantic": version("pydantic"),
        "duckdb": version("duckdb"),
        "psycopg": version("psycopg"),
    }


def run_backend(name: str, args: argparse.Namespace, bundles: list[Bundle], workdir: str) -> Report:
    """All scenarios of one backend. Write scenarios alternate polylogue and its raw
    reference ``--repeat`` times on fresh databases and keep medians, so that a noisy
    neighbour slows both sides alike."""
    report = Report(name, sum(len(b[1]) for b in bundles))
    count = report.messages
    print(f"== {name}: {count:,} messages in {len(bundles):,} conversations", flush=True)
    samples: dict[str, list[float]] = {
        k: [] for k in ("first", "again", "bulk", "raw_first", "raw_bulk")
    }
    labels: dict[str, str] = {}
    cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in samples}
    # DuckDB takes tens of milliseconds per transaction: one bundle per transaction runs
    # over the first bundles only (labelled), the rest of the scenarios over all of them.
    per_bundle = bundles[: args.duckdb_bundles] if name == "duckdb" else bundles
    per_bundle_count = sum(len(b[1]) for b in per_bundle)
    for repetition in range(args.repeat):
        last = repetition == args.repeat - 1
        # one bundle per transaction, then the same bundles again (all unchanged)
        with open_fresh(name, workdir, args.postgres_url) as backend:
            repo = StorageRepository(backend)

            def ingest(repo: StorageRepository = repo) -> None:
                for conversation, messages, attachments in per_bundle:
                    repo.save_conversation(
                        conversation=conversation, messages=messages, attachments=attachments
                    )

            for key in ("first", "again"):
                with _cpu_per_1k(cpu[key], per_bundle_count):
                    samples[key].append(throughput(per_bundle_count, ingest))
        with _cpu_per_1k(cpu["raw_first"], per_bundle_count):
            raw = references.measure(name, "per_bundle", per_bundle, workdir, args.postgres_url)
        if raw:
            samples["raw_first"].append(raw[0])
            labels["raw_first"] = raw[1]
        with fresh_database(name, workdir, args.postgres_url) as (url, backend):
            repo = StorageRepository(backend)
            with _cpu_per_1k(cpu["bulk"], count):
                samples["bulk"].append(
                    throughput(count, lambda repo=repo: repo.save_many(bundles, **_batch(args)))
                )
            if last:  # reads on the full archive, by a reader process
                if name != "postgres":
                    backend.close()  # a DuckDB file opens in one process at a time
                read_scenarios(report, url, bundles, args, workdir)
        with _cpu_per_1k(cpu["raw_bulk"], count):
            raw = references.measure(name, "bulk", bundles, workdir, args.postgres_url)
        if raw:
            samples["raw_bulk"].append(raw[0])
            labels["raw_bulk"] = raw[1]

    med = {k: statistics.median(v) for k, v in samples.items() if v}
    subset = "" if per_bundle is bundles else f" (first {per_bundle_count:,} messages)"
    first = report.add(Row(f"ingest, one bundle per transaction{subset}", med["first"], "msg/s"))
    again = report.add(Row(f"re-ingest unchanged bundles{subset}", med["again"], "msg/s"))
    again.reference, again.reference_label = first.value, "first ingest"
    bulk = report.add(
        Row(f"bulk save_many (batch {args.batch_size or 'default'})", med["bulk"], "msg/s")
    )
    for row, ours, raw_key in ((first, "first", "raw_first"), (bulk, "bulk", "raw_bulk")):
        if raw_key in med:
            row.reference, row.reference_label = med[raw_key], labels[raw_key]
            pairs = zip(samples[ours], samples[raw_key], strict=True)
            row.paired_ratio = statistics.median(a / b for a, b in pairs)
    apply_targets(name, count, first, again, bulk)
    report.add(Row("stats()", report.extra.pop("stats_ms"), "ms"))
    # peak RSS of a bulk import in a process of its own
    rss = peak_rss(name, args, workdir)
    report.add(
        Row(
            "peak RSS, bulk import (own process)",
            rss["peak_rss_mb"],
            "MB",
            target=_rss_target(name, count),
            met=_rss_met(name, count, rss["peak_rss_mb"]),
        )
    )
    report.extra["repeat"] = args.repeat
    for key, values in samples.items():
        report.extra[f"samples_{key}_msg_s"] = [round(v) for v in values]
    if name == "duckdb":  # its per-bundle reference writes a sample and extrapolates
        del cpu["raw_first"]
    report.extra["cpu_ms_per_1k_messages"] = {
        key: [round(statistics.median(side), 1) for side in zip(*pairs, strict=True)]
        for key, pairs in cpu.items()
        if pairs
    }
    return report


@contextlib.contextmanager
def _cpu_per_1k(into: list[tuple[float, float]], messages: int) -> Iterator[None]:
    """Append (this process's, the PostgreSQL server's) CPU milliseconds per 1,000
    messages spent inside the block: wall time swings with the disk, CPU time less."""
    start = cpu_seconds()
    yield
    end = cpu_seconds()
    into.append(((end[0] - start[0]) * 1e6 / messages, (end[1] - start[1]) * 1e6 / messages))


def apply_targets(name: str, messages: int, first: Row, again: Row, bulk: Row) -> None:
    """The targets of performance round two, evaluated on this run's numbers."""
    again.target, again.met = "≥ 1.5× first ingest", again.value >= 1.5 * first.value
    if name == "sqlite" and first.ratio and bulk.ratio:
        first.target, first.met = "≥ 0.85× raw", first.ratio >= 0.85
        bulk.target, bulk.met = "≥ 0.9× raw", bulk.ratio >= 0.9
    elif name == "duckdb":
        floor = 40_000 if messages >= 1_000_000 else 50_000
        bulk.target, bulk.met = f"≥ {floor:,} msg/s", bulk.value >= floor
    elif name == "postgres" and first.ratio and bulk.ratio:
        bulk.target, bulk.met = "≥ 0.85× COPY", bulk.ratio >= 0.85
        first.target, first.met = "≥ 0.9× raw", first.ratio >= 0.9


def _batch(args: argparse.Namespace) -> dict[str, int]:
    return {"batch_size": args.batch_size} if args.batch_size else {}


def read_scenarios(
    report: Report, url: str, bundles: list[Bundle], args: argparse.Namespace, workdir: str
) -> None:
    """The read rows, measured by ``python -m bench.reads`` on the archive reopened."""
    rng = random.Random(7)
    sample = [rng.choice(bundles)[0].conversation_id for _ in range(args.read_samples)]
    with_attachments = [b[0].conversation_id for b in bundles if b[2]] or sample
    ids = Path(workdir) / "read-ids.json"
    ids.write_text(
        json.dumps({"sample": sample, "with_attachments": with_attachments[: len(sample)]})
    )
    command = [sys.executable, "-m", "bench.reads", report.backend, url, str(ids)]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent
    )
    got: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    row = report.add(Row("get_messages p50", got["get_messages_p50"], "ms"))
    report.add(Row("get_messages p99", got["get_messages_p99"], "ms"))
    if "raw_get_messages_p50" in got:
        row.reference = got["raw_get_messages_p50"]
        row.reference_label = "raw driver fetchall, same SQL"
    if report.backend in ("sqlite", "postgres") and row.reference:
        row.target, row.met = "≤ 3× raw", row.value <= 3 * row.reference
    elif report.backend == "duckdb":
        row.target, row.met = "≤ 3 ms", row.value <= 3
    first = report.add(Row("list_conversations(limit=50) p50", got["list_conversations_p50"], "ms"))
    report.add(Row("list_conversations(limit=50) p99", got["list_conversations_p99"], "ms"))
    if report.backend == "sqlite":
        first.target, first.met = "≤ 1 ms", first.value <= 1
    elif report.backend == "duckdb":
        first.target, first.met = "≤ 2 ms", first.value <= 2
    report.add(Row("get_attachments p50", got["get_attachments_p50"], "ms"))
    report.extra["stats_ms"] = got["stats_ms"]


def peak_rss(name: str, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "bench.rss",
        "--backend",
        name,
        "--messages",
        str(args.messages),
        "--workdir",
        workdir,
    ]
    if args.postgres_url:
        command += ["--postgres-url", args.postgres_url]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _rss_target(name: str, messages: int) -> str:
    limit = 500 if name == "duckdb" else 300
    return f"≤ {limit} MB at 1M" if messages >= 1_000_000 else f"(≤ {limit} MB at 1M)"


def _rss_met(name: str, messages: int, value: float) -> bool | None:
    if messages < 1_000_000:
        return None
    return value <= (500 if name == "duckdb" else 300)


def markdown(report: Report, info: dict[str, Any], command: str) -> str:
    lines = [
        f"### {report.backend}: {report.messages:,} messages",
        "",
        f"Command: `{command}`  ",
        f"Machine: {info['cores']} cores, Python {info['python']}, SQLite {info['sqlite']},"
        f" aiosql {info['aiosql']}, pydantic {info['pydantic']}, duckdb {info['duckdb']},"
        f" psycopg {info['psycopg']}",
        "",
        "| scenario | polylogue | reference | ratio | target | met |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    writes_first = sorted(
        report.rows, key=lambda r: not r.scenario.startswith(("ingest", "re-ingest", "bulk"))
    )
    for row in writes_first:
        value = (
            f"{row.value:,.0f} {row.unit}"
            if row.unit == "msg/s"
            else f"{row.value:,.3f} {row.unit}"
        )
        ref = ""
        if row.reference is not None:
            unit = row.unit
            shown = f"{row.reference:,.0f}" if unit == "msg/s" else f"{row.reference:,.3f}"
            ref = f"{shown} {unit} ({row.reference_label})"
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        lines.append(f"| {row.scenario} | {value} | {ref} | {ratio} | {row.target} | {met} |")
    lines.append("")
    lines += _cpu_lines(report)
    lines.append(
        f"Write scenarios: median of {report.extra.get('repeat', 1)} alternating runs per side,"
        " each on a fresh database; the ratio is the median of the per-run ratios (each"
        " polylogue run against the raw run next to it). Latencies: p50/p99 over"
        " the sampled conversations."
    )
    return "\n".join(lines) + "\n"


_CPU_LABELS = {
    "first": "ingest, one bundle per transaction",
    "again": "re-ingest unchanged bundles",
    "bulk": "bulk save_many",
    "raw_first": "raw reference, one bundle per transaction",
    "raw_bulk": "raw reference, bulk",
}


def _cpu_lines(report: Report) -> list[str]:
    """The CPU table: medians of the runs, in ms per 1,000 messages."""
    cpu = report.extra.get("cpu_ms_per_1k_messages", {})
    if not cpu:
        return []
    lines = [
        "| CPU per 1,000 messages (median) | benchmark process | PostgreSQL server |",
        "| --- | ---: | ---: |",
    ]
    for key, (client, server) in cpu.items():
        shown = f"{server:,.1f} ms" if report.backend == "postgres" else "-"
        lines.append(f"| {_CPU_LABELS[key]} | {client:,.1f} ms | {shown} |")
    lines.append("")
    lines.append(
        "CPU: the raw reference's rows include creating its tables; the server column sums"
        " every PostgreSQL process on this machine (background writers included)."
    )
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 messages, fewer reads")
    parser.add_argument("--backends", help="comma-separated subset of sqlite,duckdb,postgres")
    parser.add_argument("--postgres-url", default=os.environ.get("POLYLOGUE_BENCH_POSTGRES_URL"))
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--read-samples", type=int, default=500)
    parser.add_argument("--repeat", type=int, help="write runs per side (default 3; 1 at 1M)")
    parser.add_argument(
        "--duckdb-bundles",
        type=int,
        default=200,
        help="bundles in DuckDB's one-bundle-per-transaction scenarios (default 200)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.read_samples = 10_000, 100
    if args.repeat is None:
        args.repeat = 1 if args.messages >= 1_000_000 else 3
    names = available(args.postgres_url)
    if args.backends:
        wanted = args.backends.split(",")
        names = [n for n in names if n in wanted]
    workload = Workload(args.messages)
    bundles = list(workload.bundles())
    info = machine()
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = dt.date.today().isoformat()
    for name in names:
        with tempfile.TemporaryDirectory(prefix="polylogue-bench-") as workdir:
            report = run_backend(name, args, bundles, workdir)
        text = markdown(report, info, command.strip())
        print(text)
        if not args.no_write:
            RESULTS.mkdir(exist_ok=True)
            suffix = "" if args.messages == 100_000 else f"-{args.messages // 1000}k"
            base = RESULTS / f"{stamp}-{name}{suffix}"
            base.with_suffix(".md").write_text(text)
            payload = {
                "machine": info,
                "command": command,
                "report": asdict(report),
                "ratios": {r.scenario: r.ratio for r in report.rows},
            }
            base.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str))


_: Callable[..., Any] = main
