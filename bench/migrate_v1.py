"""Time the upgrade of a version-1 SQLite archive to the current schema.

    python -m bench.migrate_v1 --attachments 100000 --messages 1000000
    python -m bench.migrate_v1 --attachments 16000 --messages 100000 --migrations /tmp/old

A v1 archive (the schema of ``migrations/sqlite/0001_initial.sql``, attachments one row
per reference without a primary key, as some old databases have it) is built with raw
sqlite3 in one transaction, kept in ``--workdir`` under a name made of its parameters,
and copied before each upgrade, so a rerun does not build it again. The upgrade is the
package's own: :class:`SQLiteBackend` with the migration runner, backup and checks
included; each phase is timed (backup, every script, the checks before each commit).
Wall time and this process's CPU time (SQLite runs in it) are reported; ``--migrations``
runs the scripts of another folder (an older text of a script, to compare).

It measures; it never fails because the machine was slow. It does check the upgrade
kept every row: messages, one ref per distinct v1 reference, ``ref_count`` = real refs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import machine
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.sqlfiles import resource_dir

RESULTS = Path(__file__).resolve().parent / "results"
PER_CONVERSATION = 20

# Old code's attachments table: one row per reference, the id repeated for each.
ATTACHMENTS_V1 = """
CREATE TABLE attachments (
    attachment_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id TEXT,
    mime_type TEXT,
    size_bytes INTEGER,
    path TEXT,
    provider_meta TEXT,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    FOREIGN KEY (message_id)
    REFERENCES messages (message_id) ON DELETE SET NULL
)
"""


@dataclass(frozen=True)
class Shape:
    """What the v1 archive holds."""

    messages: int
    attachments: int
    runs: int
    seed: int = 20261202

    @property
    def conversations(self) -> int:
        return max(1, self.messages // PER_CONVERSATION)

    @property
    def file_name(self) -> str:
        return f"v1-{self.messages}m-{self.attachments}a-{self.runs}r-{self.seed}.db"


def _text_pool(rng: random.Random, size: int = 1 << 20) -> str:
    parts = [
        "The quick brown fox jumps over the lazy dog while the model explains recursion. ",
        "自然言語処理は面白いです。我们今天讨论数据库的事务隔离级别。 ",
        "def upsert(conn, rows):\n    with conn:\n        conn.executemany(SQL, rows)\n",
        "😀🎉🚀👩‍💻🧪✨ ",
    ]
    chunks: list[str] = []
    total = 0
    while total < size:
        chunk = rng.choices(parts, [6, 2, 2, 1])[0]
        chunks.append(chunk)
        total += len(chunk)
    return "".join(chunks)


def build_v1(path: Path, shape: Shape) -> None:
    """A v1 archive at ``path``: conversations of 20 messages (50–2,000 characters),
    ``attachments`` distinct attachments of which every fifth is also referred to by a
    second conversation, 5% without a message and 1% naming a message deleted since,
    and ``runs`` runs with NULL and repeated ids, in WAL mode as old code left it."""
    rng = random.Random(shape.seed)
    pool = _text_pool(rng)
    limit = len(pool) - 2_000
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        initial = (resource_dir("migrations", "sqlite") / "0001_initial.sql").read_text()
        conn.executescript(f"BEGIN; {initial}; DROP TABLE attachments; COMMIT;")
        conn.execute("BEGIN")
        conn.execute(ATTACHMENTS_V1)
        conversations = shape.conversations
        conn.executemany(
            "INSERT INTO conversations (conversation_id, provider_name,"
            " provider_conversation_id, title, created_at, updated_at, content_hash,"
            " provider_meta, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (
                (
                    f"conv-{c:08d}",
                    ("chatgpt", "claude", "gemini", "codex")[c % 4],
                    f"p-{c}",
                    pool[c % limit : c % limit + 40],
                    "2024-01-01T00:00:00Z",
                    f"2024-{1 + c % 12:02d}-{1 + c % 28:02d}T00:00:00Z",
                    f"hash-{c}",
                    json.dumps({"source": f"export-{c % 3}"}),
                )
                for c in range(conversations)
            ),
        )

        def messages() -> Iterator[tuple[Any, ...]]:
            for n in range(conversations * PER_CONVERSATION):
                c, m = divmod(n, PER_CONVERSATION)
                start = rng.randrange(limit)
                yield (
                    f"conv-{c:08d}-msg-{m:03d}",
                    f"conv-{c:08d}",
                    f"pm-{m}",
                    "user" if m % 2 == 0 else "assistant",
                    pool[start : start + rng.randint(50, 2_000)],
                    f"2024-01-01T00:{m // 60:02d}:{m % 60:02d}Z",
                    f"mh-{n}",
                    None if m % 2 == 0 else '{"model": "gpt-4o"}',
                )

        conn.executemany(
            "INSERT INTO messages (message_id, conversation_id, provider_message_id, role,"
            " text, timestamp, content_hash, provider_meta, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
            messages(),
        )

        def references() -> Iterator[tuple[Any, ...]]:
            for a in range(shape.attachments):
                owners = [rng.randrange(conversations)]
                if a % 5 == 0:
                    owners.append(rng.randrange(conversations))
                for c in owners:
                    draw = rng.random()
                    if draw < 0.05:
                        message_id = None
                    elif draw < 0.06:
                        message_id = f"conv-{c:08d}-msg-deleted"
                    else:
                        message_id = f"conv-{c:08d}-msg-{rng.randrange(PER_CONVERSATION):03d}"
                    yield (
                        f"att-{a:08d}",
                        f"conv-{c:08d}",
                        message_id,
                        "image/png",
                        rng.randint(1_000, 5_000_000),
                        f"/files/att-{a:08d}.png",
                        None if a % 3 else json.dumps({"source": "upload", "n": a}),
                    )

        conn.executemany(
            "INSERT INTO attachments (attachment_id, conversation_id, message_id, mime_type,"
            " size_bytes, path, provider_meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
            references(),
        )
        conn.executemany(
            "INSERT INTO runs (run_id, timestamp, counts_json, duration_ms) VALUES (?, ?, ?, ?)",
            (
                (
                    None if r % 10 == 0 else f"run-{r // 2 if r % 7 == 0 else r}",
                    f"2024-01-01T00:00:{r % 60:02d}Z",
                    json.dumps({"messages": r}),
                    r,
                )
                for r in range(shape.runs)
            ),
        )
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


@dataclass
class Timings:
    """Seconds per phase of one upgrade."""

    phases: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds


class _TimedQueries:
    """The backend's query set, with the checks' queries timed (rows consumed)."""

    TIMED = ("foreign_key_check", "quick_check")

    def __init__(self, queries: Any, timings: Timings) -> None:
        self._queries = queries
        self._timings = timings

    def __getattr__(self, name: str) -> Any:
        query = getattr(self._queries, name)
        if name not in self.TIMED:
            return query

        def timed(*args: Any, **kwargs: Any) -> list[Any]:
            start = time.perf_counter()
            try:
                return list(query(*args, **kwargs))
            finally:
                self._timings.add(f"check: {name}", time.perf_counter() - start)

        return timed


class TimedBackend(SQLiteBackend):
    """The SQLite backend with the migration's backup, checks and commits timed."""

    timings: Timings

    def start_timing(self, timings: Timings) -> None:
        self.timings = timings
        self.queries = _TimedQueries(self.queries, timings)

    def timed(self, phase: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return work()
        finally:
            self.timings.add(phase, time.perf_counter() - start)

    def write_migration_backup(
        self, conn: sqlite3.Connection, version: int, reaching: int
    ) -> Path | None:
        found: Path | None = self.timed(
            "backup",
            lambda: super(TimedBackend, self).write_migration_backup(conn, version, reaching),
        )
        return found

    def _commit_outer(self, conn: Any) -> None:
        self.timed("commits", lambda: super(TimedBackend, self)._commit_outer(conn))


class TimedRunner(MigrationRunner):
    """The runner with each script timed; the work is the package's own."""

    def __init__(self, backend: TimedBackend, folder: Path | None) -> None:
        super().__init__(backend, folder, where=backend.describe())
        self.backend = backend
        self.names = {s.sql: s.name for s in self.scripts}

    def run_script(self, conn: sqlite3.Connection, sql: str) -> None:
        self.backend.timed(self.names[sql], lambda: super(TimedRunner, self).run_script(conn, sql))


def upgrade(path: Path, folder: Path | None, backup: bool) -> dict[str, Any]:
    """Migrate ``path`` to the newest version of ``folder``; wall, CPU, phases, counts."""
    timings = Timings()
    backend = TimedBackend(path, migrate=False, backup=backup)
    try:
        backend.start_timing(timings)
        runner = TimedRunner(backend, folder)
        wall, cpu = time.perf_counter(), time.process_time()
        done = runner.migrate()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        backup_bytes = runner.backup_path.stat().st_size if runner.backup_path else 0
        if runner.backup_path:
            runner.backup_path.unlink()
    finally:
        backend.close()
    order = ["backup", *runner.names.values(), "check: foreign_key_check", "check: quick_check"]
    phases = {name: timings.phases.pop(name) for name in order if name in timings.phases}
    return {
        "applied": [s.name for s in done],
        "wall_s": wall,
        "cpu_s": cpu,
        "phases_s": {**phases, **timings.phases},
        "backup_bytes": backup_bytes,
    }


def verify(v1: Path, upgraded: Path) -> dict[str, int]:
    """Rows before and after agree: messages, refs (distinct v1 references), ref_count."""
    old = sqlite3.connect(v1)  # only read; read-write so that closing removes -wal/-shm
    new = sqlite3.connect(upgraded)
    try:
        messages = old.execute("SELECT count(*) FROM messages").fetchone()[0]
        distinct_refs = old.execute(
            "SELECT count(*) FROM (SELECT DISTINCT a.attachment_id, a.conversation_id,"
            " m.message_id FROM attachments AS a LEFT JOIN messages AS m"
            " ON a.message_id = m.message_id)"
        ).fetchone()[0]
        got = {
            "messages": new.execute("SELECT count(*) FROM messages").fetchone()[0],
            "refs": new.execute("SELECT count(*) FROM attachment_refs").fetchone()[0],
            "attachments": new.execute("SELECT count(*) FROM attachments").fetchone()[0],
            "ref_count_total": new.execute("SELECT sum(ref_count) FROM attachments").fetchone()[0],
            "runs": new.execute("SELECT count(*) FROM runs").fetchone()[0],
        }
        wrong_counts = new.execute(
            "SELECT count(*) FROM attachments AS a WHERE a.ref_count <>"
            " (SELECT count(*) FROM attachment_refs AS r WHERE r.attachment_id = a.attachment_id)"
        ).fetchone()[0]
    finally:
        old.close()
        new.close()
    if got["messages"] != messages or got["refs"] != distinct_refs or wrong_counts:
        raise SystemExit(
            f"the upgrade lost or miscounted rows: {got}, expected {messages} messages and"
            f" {distinct_refs} refs, {wrong_counts} wrong ref_count values"
        )
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--attachments", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--migrations", type=Path, help="scripts folder (default: packaged)")
    parser.add_argument("--no-backup", action="store_true", help="migrate without a backup")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    shape = Shape(args.messages, args.attachments, args.runs)
    args.workdir.mkdir(parents=True, exist_ok=True)
    v1 = args.workdir / shape.file_name
    if not v1.exists():
        start = time.perf_counter()
        partial = v1.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build_v1(partial, shape)
        partial.rename(v1)
        print(f"built {v1} in {time.perf_counter() - start:.1f} s", flush=True)
    runs = []
    for _ in range(args.repeat):
        work = args.workdir / f"upgrade-{shape.file_name}"
        shutil.copyfile(v1, work)
        result = upgrade(work, args.migrations, backup=not args.no_backup)
        result["rows"] = verify(v1, work)
        result["database_bytes"] = work.stat().st_size
        work.unlink()
        runs.append(result)
        print(json.dumps(result, indent=2), flush=True)
    report = {
        "scenario": "upgrade a v1 SQLite archive to the current schema",
        "shape": {
            "messages": shape.conversations * PER_CONVERSATION,
            "conversations": shape.conversations,
            "attachments": shape.attachments,
            "v1_attachment_rows": "attachments + every fifth again",
            "runs": shape.runs,
        },
        "v1_bytes": v1.stat().st_size,
        "migrations": str(args.migrations or "packaged"),
        "backup": not args.no_backup,
        "machine": machine(),
        "runs": runs,
    }
    lines = [
        f"## upgrade v1 → current: {shape.messages:,} messages, {shape.attachments:,}"
        f" attachments, {shape.runs:,} runs ({report['migrations']})",
        "",
        "| run | wall s | CPU s | " + " | ".join(runs[0]["phases_s"]) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(runs[0]["phases_s"]),
    ]
    for i, r in enumerate(runs, start=1):
        phases = " | ".join(f"{v:.2f}" for v in r["phases_s"].values())
        lines.append(f"| {i} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {phases} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        stem = (
            f"{dt.date.today().isoformat()}-migrate-v1-{shape.messages // 1000}k"
            f"-{shape.attachments // 1000}k-{shape.runs}r"
            + (f"-{args.migrations.name}" if args.migrations else "")
            + ("-no-backup" if args.no_backup else "")
        )
        (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{stem}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
