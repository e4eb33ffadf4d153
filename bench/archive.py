"""Archive import/export/copy against the repository's own bulk path (python -m bench.archive).

    python -m bench.archive --messages 100000 --backends sqlite,duckdb --repeat 3
    python -m bench.archive --messages 1000000 --backends sqlite --repeat 1
    python -m bench.archive --messages 1000000 --backends sqlite --repeat 1 \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/postgres

The issue's import target is relative: importing a bundle file must reach 0.7x the
throughput of ``save_many`` given the same bundles in memory, so both run in this
process, alternating, each on a fresh database, and the ratio is taken per pair (the
machine is noisy; a ratio of two runs side by side moves less than either run). The
``save_many`` side gets records built for it and frozen out of the garbage collector
before the clock starts, so that it pays neither for building them nor for them being
saved before (sqlite3 keeps a string's UTF-8 form once made). CPU
seconds are this process's, all threads (DuckDB writes on its own threads). Export is
timed on the database each import produced and its file compared byte for byte with the
input. Peak RSS is measured in a fresh process running the CLI itself (``polylogue import``
/ ``export``), because this one holds the whole workload in memory. With
``--postgres-url``, ``polylogue copy`` SQLite -> PostgreSQL (verify timed on its own) is
compared with ``polylogue import`` of the same file into PostgreSQL. It measures; it
never fails because the machine was slow.
"""

from __future__ import annotations

import argparse
import filecmp
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.backends import open_fresh
from bench.workload import Workload
from polylogue.archive.exporter import write_archive
from polylogue.archive.format import encode_bundle, encode_header
from polylogue.archive.importer import import_archives
from polylogue.storage.backends import SQLBackend, create_backend
from polylogue.storage.records import AttachmentRecord
from polylogue.storage.repository import Bundle, StorageRepository

# Runs the CLI in-process so that VmHWM is the command's own peak, not a wrapper's.
_RSS_WRAPPER = """
import json, sys
from bench.measure import peak_rss_mb
from polylogue.cli import main
before = peak_rss_mb()
code = 0
try:
    main(sys.argv[1:], prog_name="polylogue")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"peak_rss_mb": peak_rss_mb(), "before_mb": before, "exit": code}),
      file=sys.stderr)
"""


class Timing:
    """Wall and process-CPU seconds of one block (``with Timing() as t: ...``)."""

    wall = cpu = 0.0

    def __enter__(self) -> Timing:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def canonical(bundles: Iterator[Bundle]) -> list[Bundle]:
    """The workload as an export would give it back, so that export can be compared byte
    for byte with the input: a shared attachment keeps its first size and path (the
    workload draws them per conversation; the archive holds one row per id), and
    attachments come by id, then message id (the export order)."""
    first: dict[str, AttachmentRecord] = {}
    out: list[Bundle] = []
    for conversation, messages, attachments in bundles:
        same = []
        for a in attachments:
            seen = first.setdefault(a.attachment_id, a)
            same.append(a.model_copy(update={"size_bytes": seen.size_bytes, "path": seen.path}))
        same.sort(key=lambda a: (a.attachment_id, a.message_id or ""))
        out.append((conversation, messages, same))
    return out


def write_bundle_file(bundles: list[Bundle], path: Path) -> int:
    """The workload as a bundle file, encoded by the format module itself; its size."""
    with open(path, "wb") as out:
        out.write(encode_header())
        for conversation, messages, attachments in bundles:
            out.write(encode_bundle(conversation, messages, attachments))
    return path.stat().st_size


def paired(name: str, path: Path, workdir: str, repeat: int, messages: int) -> dict[str, Any]:
    """``repeat`` pairs of save_many and import, alternating which goes first; exports."""
    runs: dict[str, list[Timing]] = {"save_many": [], "import": [], "export": []}
    identical: list[bool] = []

    def save_many() -> None:
        # Records never saved before: sqlite3 caches a string's UTF-8 form in the string,
        # so saving the same objects again would skip work that import always does.
        fresh = canonical(Workload(messages).bundles())
        # Out of the collector's sight: otherwise every full collection during the run
        # walks these records, a cost of holding the workload, not of saving it.
        gc.freeze()
        with open_fresh(name, workdir) as backend, Timing() as t:
            StorageRepository(backend).save_many(fresh)
        runs["save_many"].append(t)
        del fresh

    def import_then_export() -> None:
        with open_fresh(name, workdir) as backend:
            with Timing() as t:
                summary = import_archives(StorageRepository(backend), [str(path)])
            if summary.inserted["messages"] != messages or summary.rejected:
                raise SystemExit(f"{name}: import stored {summary.inserted}, {summary.rejected}")
            runs["import"].append(t)
            out = Path(workdir) / f"export-{uuid.uuid4().hex[:8]}.jsonl"
            with open(out, "wb") as stream, Timing() as e:
                write_archive(backend, stream)
            runs["export"].append(e)
            identical.append(filecmp.cmp(path, out, shallow=False))
            out.unlink()

    for index in range(repeat):
        order: list[Callable[[], None]] = [save_many, import_then_export]
        for work in order if index % 2 == 0 else reversed(order):
            work()
        _cleanup(workdir)
    ratios = [s.wall / i.wall for s, i in zip(runs["save_many"], runs["import"], strict=True)]
    return {"runs": runs, "ratios": ratios, "identical": identical}


def _cleanup(workdir: str) -> None:
    for file in Path(workdir).glob("bench-*"):
        file.unlink()


def cli(args: list[str], *, rss: bool = False) -> tuple[Timing, dict[str, Any]]:
    """Run ``polylogue ARGS`` in a fresh process: wall and child CPU seconds, RSS report."""
    code = [sys.executable, "-c", _RSS_WRAPPER] if rss else [sys.executable, "-m", "polylogue"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*code, *args], capture_output=True, text=True, check=False)
    timing = Timing()
    timing.wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timing.cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    report: dict[str, Any] = {"exit": done.returncode, "stderr": done.stderr.strip()}
    if rss and done.stderr.strip():
        report.update(json.loads(done.stderr.strip().splitlines()[-1]))
    if report["exit"] not in (0, None):
        print(f"polylogue {' '.join(args)} exited {report['exit']}: {done.stderr}", file=sys.stderr)
    return timing, report


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A URL naming a new PostgreSQL schema, dropped afterwards if the server lets us."""
    sep = "&" if "?" in url else "?"
    schema_url = f"{url}{sep}schema=bench_{uuid.uuid4().hex[:10]}"
    try:
        yield schema_url
    finally:
        from bench.pg_probe import PROBE_SQL

        try:
            backend: SQLBackend = create_backend(schema_url)
            with backend.pool.connection() as conn:  # type: ignore[attr-defined]
                PROBE_SQL.drop_current_schema(conn)
            backend.close()
        except Exception as exc:  # a restarted server must not cost the numbers above
            print(f"could not drop the schema of {schema_url}: {exc}", file=sys.stderr)


def _rate(messages: int, timings: list[Timing]) -> str:
    wall = statistics.median(t.wall for t in timings)
    cpu = statistics.median(t.cpu for t in timings)
    return f"{messages / wall:,.0f} msg/s | {wall:.2f} s | {cpu:.2f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,duckdb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url")
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS runs")
    parser.add_argument("--workdir", help="where files and databases go (default: a temp dir)")
    args = parser.parse_args(argv)
    workload = Workload(args.messages)
    n = workload.messages
    with tempfile.TemporaryDirectory(prefix="bench-archive-", dir=args.workdir) as workdir:
        path = Path(workdir) / "archive.jsonl"
        size = write_bundle_file(canonical(workload.bundles()), path)
        print(f"# archive import/export, {n:,} messages ({size / 1e6:,.0f} MB file)\n")
        for name in args.backends.split(","):
            result = paired(name, path, workdir, args.repeat, n)
            runs, ratios = result["runs"], result["ratios"]
            print(f"## {name}, {args.repeat} paired runs (medians)\n")
            print("| scenario | throughput | wall | CPU |\n| --- | ---: | ---: | ---: |")
            print(f"| `save_many`, bundles in memory | {_rate(n, runs['save_many'])} |")
            print(f"| `import_archives` of the file | {_rate(n, runs['import'])} |")
            print(f"| `write_archive` (export) | {_rate(n, runs['export'])} |")
            per_pair = ", ".join(f"{r:.2f}" for r in ratios)
            print(
                f"\nimport / save_many: median **{statistics.median(ratios):.2f}x**"
                f" (pairs: {per_pair}); export byte-identical: {all(result['identical'])}\n"
            )
        if not args.no_rss or args.postgres_url:
            db = Path(workdir) / "rss.db"
            url = f"sqlite://{db}"
            out = Path(workdir) / "rss-export.jsonl"
            imp, imp_rss = cli(["import", "--quiet", "--url", url, str(path)], rss=True)
            exp, exp_rss = cli(["export", "--quiet", "--url", url, "-o", str(out)], rss=True)
            print("## SQLite, fresh processes (`polylogue import` / `export`)\n")
            print("| command | wall | CPU | msg/s | peak RSS | RSS before the command |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for label, t, r in (("import", imp, imp_rss), ("export", exp, exp_rss)):
                print(
                    f"| {label} | {t.wall:.2f} s | {t.cpu:.2f} s | {n / t.wall:,.0f} |"
                    f" {r.get('peak_rss_mb', float('nan')):.0f} MB |"
                    f" {r.get('before_mb', float('nan')):.0f} MB |"
                )
            print(f"\nexport byte-identical: {filecmp.cmp(path, out, shallow=False)}\n")
            if args.postgres_url:
                compare_copy(args.postgres_url, url, path, n)


def compare_copy(pg_url: str, sqlite_url: str, path: Path, n: int) -> None:
    """``polylogue copy`` SQLite -> PostgreSQL, its verify, and import of the file there.

    Each row is printed as soon as it is measured: a server restarted by someone else
    loses only the rows after it.
    """
    print("## SQLite -> PostgreSQL, fresh processes (CPU: the client's only)\n")
    print("| command | wall | client CPU | msg/s | exit |\n| --- | ---: | ---: | ---: | ---: |")

    def row(label: str, t: Timing, report: dict[str, Any]) -> None:
        line = f"| {label} | {t.wall:.2f} s | {t.cpu:.2f} s | {n / t.wall:,.0f} |"
        print(f"{line} {report['exit']} |", flush=True)

    with postgres_schema(pg_url) as target:
        copy, report = cli(["copy", "--quiet", "--no-verify", sqlite_url, target])
        row("`copy --no-verify`", copy, report)
        verify, report = cli(["verify", sqlite_url, target])
        row("`verify`", verify, report)
    with postgres_schema(pg_url) as target:
        imp, report = cli(["import", "--quiet", "--url", target, str(path)])
        row("`import` of the file", imp, report)
    print(f"\ncopy / import wall time: **{copy.wall / imp.wall:.2f}x**\n")


if __name__ == "__main__":
    main()
