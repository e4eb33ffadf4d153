"""Killed mid-write: SIGKILL an importing or migrating process, then prove nothing was lost.

Imports (SQLite, DuckDB, PostgreSQL client): a child process imports a seeded workload
(``_workload.py``: ``save_many`` batches and ``save_conversation`` calls, attachments
shared across conversations, attachment lists that change between versions) and prints
each step it finishes; the test SIGKILLs it at a seeded moment after a seeded number of
reports. After each kill:

* the database opens, and holds nothing broken (``integrity_check``/``foreign_key_check``
  on SQLite; on every backend no dangling row, ``ref_count`` = refs, no attachment
  without refs, every ref id the documented formula);
* it holds exactly what the transactions committed so far leave: all steps reported,
  plus some whole transactions of the step in flight, never part of one (no partial
  bundle, no mix of versions of one conversation);
* the next child resumes on the same database (from the first unreported step, or from
  an earlier one) and is killed again; after several kills a rerun of the whole import
  to completion leaves a database identical, row for row, to a clean import.

Migrations: SQLite kills the ``polylogue migrate`` of a version-1 archive with data, again
and again until it finishes: after each kill the file is sound and at some version
1..current holding exactly what migrating the untouched copy to that version holds; the
finished rerun equals migrating the untouched copy. PostgreSQL and DuckDB kill the
baseline migration of an empty database: it is either empty or complete, and a rerun
migrates it to the current version.

Kill counts come from the environment (``POLYLOGUE_TEST_KILLS``, per backend, default
20; ``POLYLOGUE_TEST_MIGRATION_KILLS``, default 8); the seed is random unless
``POLYLOGUE_TEST_KILL_SEED`` sets it, and every failure message names it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from polylogue.storage.backends import SQLBackend, SQLiteBackend
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.migration_scripts import discover
from polylogue.storage.repository import StorageRepository
from tests.reliability._inspect import (
    canonical_dump,
    explain_mismatch,
    integrity_problems,
    observed_state,
    sqlite_file_dump,
    sqlite_file_problems,
    sqlite_foreign_key_check,
    sqlite_integrity,
    table_names,
)
from tests.reliability._legacy import build_v1_archive
from tests.reliability._processes import Child, Spawner
from tests.reliability._workload import (
    FINISHED,
    Model,
    Sizes,
    Step,
    Workload,
    run_steps,
    sizes_spec,
)

pytestmark = pytest.mark.slow

SEED_ENV = "POLYLOGUE_TEST_KILL_SEED"
KILLS_ENV = "POLYLOGUE_TEST_KILLS"
MIGRATION_KILLS_ENV = "POLYLOGUE_TEST_MIGRATION_KILLS"
KILLS = int(os.environ.get(KILLS_ENV) or 20)
"""Landed SIGKILLs of importing children per backend."""
MIGRATION_KILLS = int(os.environ.get(MIGRATION_KILLS_ENV) or 8)
"""Landed SIGKILLs of migrating children per backend."""
KILLS_PER_DATABASE = 10
"""Kills one database takes (each resumed on what the last left) before the full rerun."""
SEED = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))

IMPORT_CHILD = "from tests.reliability._workload import child_main; child_main()"
MIGRATE_CHILD = (
    "import importlib, json, sys\n"
    "importlib.import_module(sys.argv[1])\n"
    "from polylogue.cli import main\n"
    "from polylogue.storage.backends import create_backend\n"
    "print('ready', flush=True)\n"
    "line = sys.stdin.readline()\n"
    "job = json.loads(line) if line.strip() else None\n"
    "if job and job['cli']:\n"
    "    main(['migrate', '--url', job['url']])\n"
    "elif job:\n"
    "    backend = create_backend(job['url'], migrate=False)\n"
    "    print('migrating', flush=True)\n"
    "    backend.migration_runner().migrate()\n"
    "    print('migrated', flush=True)\n"
    "    backend.close()\n"
)
"""Migrates the database named on stdin: with ``polylogue migrate`` (``cli``), or through
the Python API, saying ``migrating`` just before the runner starts and ``migrated`` after.
Its argument is the backend module to import before saying ``ready``."""


def _where(family: str) -> str:
    return f"{family}, seed {SEED} (rerun with {SEED_ENV}={SEED})"


# -- databases of each backend ------------------------------------------------------------


class Target:
    """Creates databases of one backend, opens them for checking, cleans up after kills."""

    family = ""
    module = ""
    """The backend's module, which children import before they say they are ready."""
    sizes = Sizes()
    """The import workload's size on this backend."""

    def __init__(self, tmp: Path, stack: ExitStack) -> None:
        self.tmp = tmp
        self.stack = stack
        self.made = 0

    def empty_database(self) -> str:
        """The URL of a database that does not exist yet (or an empty schema)."""
        raise NotImplementedError

    def new_database(self) -> str:
        """The URL of a new database migrated to the current version."""
        url = self.empty_database()
        with self.open(url, migrate=True):
            pass
        return url

    def open(self, url: str, *, migrate: bool = False) -> AbstractContextManager[SQLBackend]:
        """The database at ``url``, opened in this process (closed on exit)."""
        raise NotImplementedError

    def after_kill(self, url: str) -> None:
        """Clean up what a killed child left outside the database (nothing, mostly)."""

    def file_problems(self, url: str) -> list[str]:
        return []


class SQLiteTarget(Target):
    family = "sqlite"
    module = "polylogue.storage.backends.sqlite.backend"

    def empty_database(self) -> str:
        self.made += 1
        return f"sqlite://{self.tmp / f'archive-{self.made}.db'}"

    @contextmanager
    def open(self, url: str, *, migrate: bool = False) -> Iterator[SQLBackend]:
        backend = SQLiteBackend(_path(url), migrate=migrate)
        try:
            yield backend
        finally:
            backend.close()

    def file_problems(self, url: str) -> list[str]:
        return sqlite_file_problems(_path(url))


class DuckDBTarget(Target):
    family = "duckdb"
    module = "polylogue.storage.backends.duckdb.backend"
    # Every DuckDB statement costs milliseconds: a smaller archive keeps the kill count.
    sizes = Sizes(conversations=24, attachments=14)

    def empty_database(self) -> str:
        self.made += 1
        return f"duckdb://{self.tmp / f'archive-{self.made}.duckdb'}"

    @contextmanager
    def open(self, url: str, *, migrate: bool = False) -> Iterator[SQLBackend]:
        from polylogue.storage.backends.duckdb.backend import DuckDBBackend

        # Opening at all is a check: the killed writer's WAL is replayed here.
        backend = DuckDBBackend(_path(url), migrate=migrate)
        try:
            yield backend
        finally:
            backend.close()


class PostgresTarget(Target):
    family = "postgresql"
    module = "polylogue.storage.backends.postgresql.backend"
    leftover = 0
    """Sessions of killed children the server had not yet ended when the test looked."""

    def empty_database(self) -> str:
        from tests.support_postgres import fresh_schema, server_url

        schema = self.stack.enter_context(fresh_schema())
        # The children's own application_name, so that their sessions can be found.
        query = urlencode({"schema": schema, "application_name": f"kill_{schema}"})
        parts = urlsplit(server_url())
        joined = f"{parts.query}&{query}" if parts.query else query
        return urlunsplit(parts._replace(query=joined))

    @contextmanager
    def open(self, url: str, *, migrate: bool = False) -> Iterator[SQLBackend]:
        from polylogue.storage.backends.postgresql.backend import PostgresBackend
        from tests.support_postgres import server_url

        backend = PostgresBackend(server_url(), schema=_query(url)["schema"], migrate=migrate)
        try:
            yield backend
        finally:
            backend.close()

    def after_kill(self, url: str) -> None:
        """End the server sessions of a killed child, so nothing waits on their locks.

        The server notices a closed socket when it next reads from it; a session busy
        with a statement notices later. Terminating them makes the next step certain.
        """
        from tests.support_postgres import admin_execute

        name = _query(url)["application_name"]
        sessions = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        self.leftover += len(admin_execute(sessions, (name,)))
        admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        deadline = time.monotonic() + 30
        while admin_execute(sessions, (name,)):
            assert time.monotonic() < deadline, f"sessions of {name} outlived termination"
            time.sleep(0.02)


TARGETS: dict[str, type[Target]] = {
    "sqlite": SQLiteTarget,
    "duckdb": DuckDBTarget,
    "postgresql": PostgresTarget,
}


def _path(url: str) -> Path:
    return Path(url.partition("://")[2])


def _query(url: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in urlsplit(url).query.split("&") if "=" in pair)


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "duckdb":
        pytest.importorskip("duckdb")
    with ExitStack() as stack:
        yield TARGETS[request.param](tmp_path, stack)


# -- imports --------------------------------------------------------------------------------


@dataclass
class KillLog:
    """What the kills hit, printed at the end of the test (``pytest -s`` shows it)."""

    landed: int = 0
    missed: int = 0
    databases: int = 0
    mid_step: int = 0
    """Kills that left a multi-transaction step partly committed."""
    in_flight: dict[str, int] = field(default_factory=dict)
    """Kind of step the kills interrupted."""

    def summary(self) -> str:
        return (
            f"{self.landed} kills landed ({self.missed} children finished first) on"
            f" {self.databases} databases; steps interrupted {self.in_flight};"
            f" {self.mid_step} left a save_many half committed"
        )


def test_killed_import_leaves_committed_prefix_and_rerun_is_exact(target: Target) -> None:
    """KILLS kills of importing children, each checked; every few kills, a full rerun
    that must equal a clean import."""
    where = _where(target.family)
    print(where)
    rng = random.Random(f"{SEED}:import:{target.family}")
    workload = Workload(SEED, target.sizes)
    steps = workload.steps
    complete = Model(workload)
    for step in steps:
        for transaction in step.transactions():
            complete.apply(step, transaction)
    final_state = complete.state()

    clean_url = target.new_database()
    with target.open(clean_url) as backend:
        started = time.perf_counter()
        run_steps(StorageRepository(backend), workload, 0)
        step_time = (time.perf_counter() - started) / len(steps)
        assert observed_state(backend) == final_state, (
            f"clean import differs from the model ({where})"
        )
        assert integrity_problems(backend) == [], where
        clean_dump = canonical_dump(backend)

    spec = {"seed": SEED, "sizes": sizes_spec(workload.sizes), "module": target.module}
    spawner = Spawner(IMPORT_CHILD, [json.dumps(spec)])
    target.stack.callback(spawner.close)
    log = KillLog()
    started, reruns = time.perf_counter(), 0.0
    while log.landed < KILLS:
        assert log.missed <= KILLS, f"most children finished before their kill ({where})"
        url = target.new_database()
        log.databases += 1
        model, resume = Model(workload), 0
        for _ in range(KILLS_PER_DATABASE):
            if log.landed >= KILLS:
                break
            if resume < len(steps) and rng.random() < 0.75:
                start = resume
            else:
                start = rng.randrange(0, max(1, min(resume, len(steps))))
            child = spawner.take()
            child.go(json.dumps({"url": url, "start": start}))
            reported, landed = _kill_after_reports(child, rng, step_time, log, where)
            target.after_kill(url)
            model, resume, partial = _check_after_kill(
                target, url, workload, model, start, reported, where
            )
            if landed:
                # Past the last step the child is closing the database (DuckDB checkpoints).
                kind = steps[resume].kind if resume < len(steps) else "close"
                log.in_flight[kind] = log.in_flight.get(kind, 0) + 1
                log.mid_step += partial

        rerun_started = time.perf_counter()
        child = spawner.take()
        child.go(json.dumps({"url": url, "start": 0}))
        lines = child.rest()
        assert child.finish() == 0 and lines[-1:] == [FINISHED], (
            f"the rerun failed ({where}): {child.stderr()}"
        )
        with target.open(url) as backend:
            assert integrity_problems(backend) == [], where
            observed = observed_state(backend)
            assert observed == final_state, (
                f"the rerun does not end where a clean import does ({where}):\n"
                + explain_mismatch(observed, [final_state])
            )
            assert canonical_dump(backend) == clean_dump, (
                f"the rerun's tables differ from a clean import's ({where})"
            )
        reruns += time.perf_counter() - rerun_started
    print(
        f"{target.family}: {log.summary()} in {time.perf_counter() - started:.1f}s"
        f" (clean import {step_time * len(steps):.2f}s, waiting for children"
        f" {spawner.waited:.1f}s, reruns {reruns:.1f}s)"
    )
    if isinstance(target, PostgresTarget):
        print(f"server sessions still there after the kills: {target.leftover}")


def _kill_after_reports(
    child: Child, rng: random.Random, step_time: float, log: KillLog, where: str
) -> tuple[list[int], bool]:
    """Wait for a seeded number of step reports, a seeded pause, then SIGKILL the child.

    Returns the indices of every step the child reported finished, and whether the kill
    landed (the child was still importing).
    """
    wanted = rng.randint(1, 3)
    pause = rng.uniform(0, 2 * step_time)
    lines: list[str] = []
    sent = False
    while len(lines) < wanted:
        line = child.readline()
        if line is None or line == FINISHED:
            break
        lines.append(line)
    else:
        time.sleep(pause)
        sent = child.kill()
    lines += child.rest()
    landed = sent and FINISHED not in lines
    if landed:
        log.landed += 1
    else:
        log.missed += 1
        if not sent:
            assert child.finish() == 0, f"the child failed by itself ({where}): {child.stderr()}"
    return [int(line) for line in lines if line != FINISHED], landed


def _check_after_kill(
    target: Target,
    url: str,
    workload: Workload,
    model: Model,
    start: int,
    reported: list[int],
    where: str,
) -> tuple[Model, int, bool]:
    """Check the database a killed child left; return the model that matches it, the step
    to resume from, and whether the step in flight was left partly committed."""
    run = workload.steps[start:]
    done = len(reported)
    assert reported == list(range(start, start + done)), f"steps out of order ({where})"
    transactions: list[tuple[Step, Any]] = [
        (step, transaction) for step in run for transaction in step.transactions()
    ]
    low = sum(len(step.transactions()) for step in run[:done])
    high = low + (len(run[done].transactions()) if done < len(run) else 0)

    problems = target.file_problems(url)
    with target.open(url) as backend:
        problems += integrity_problems(backend)
        observed = observed_state(backend)
    assert problems == [], f"broken after a kill ({where}): {problems[:10]}"

    candidate = model.copy()
    for step, transaction in transactions[:low]:
        candidate.apply(step, transaction)
    tried = []
    for committed in range(low, high + 1):
        state = candidate.state()
        if state == observed:
            return candidate, start + done, low < committed < high
        tried.append(state)
        if committed < high:
            candidate.apply(*transactions[committed])
    raise AssertionError(
        f"after a kill during step {start + done} the database holds neither the"
        f" {low} transactions reported nor up to {high - low} more whole ones ({where}):\n"
        + explain_mismatch(observed, tried)
    )


# -- migrations -----------------------------------------------------------------------------


def test_killed_sqlite_migration_leaves_a_whole_version(tmp_path: Path) -> None:
    """``polylogue migrate`` of a v1 archive killed until it finishes, then rerun."""
    where = _where("sqlite migration")
    print(where)
    rng = random.Random(f"{SEED}:migrate:sqlite")
    scripts = discover("sqlite")
    current = scripts[-1].version
    untouched = tmp_path / "v1.db"
    build_v1_archive(untouched, SEED, conversations=4000, attachments=2000)

    # What the archive holds at each version, migrated step by step from the untouched copy.
    expected: dict[int, dict[str, Any]] = {1: sqlite_file_dump(untouched)}
    expected_fk = {1: sqlite_foreign_key_check(untouched)}
    for version in range(2, current):
        folder = tmp_path / f"scripts-{version}"
        folder.mkdir()
        for script in scripts:
            if script.version <= version:
                shutil.copy(script.path, folder / script.path.name)
        path = tmp_path / f"reference-v{version}.db"
        shutil.copy(untouched, path)
        backend = SQLiteBackend(path, migrate=False)
        try:
            MigrationRunner(backend, folder).migrate()
        finally:
            backend.close()
        expected[version] = sqlite_file_dump(path)
        expected_fk[version] = sqlite_foreign_key_check(path)

    spawner = Spawner(MIGRATE_CHILD, [SQLiteTarget.module])
    try:
        reference = tmp_path / "reference.db"
        shutil.copy(untouched, reference)
        duration = _migrate_to_the_end(spawner, f"sqlite://{reference}", cli=True, where=where)
        expected[current] = sqlite_file_dump(reference)
        expected_fk[current] = sqlite_foreign_key_check(reference)
        assert expected[current]["(user_version)"] == current
        assert expected_fk[current] == []

        landed, databases, versions_seen = 0, 0, []
        while landed < MIGRATION_KILLS:
            assert len(versions_seen) <= 3 * MIGRATION_KILLS, f"kills do not land ({where})"
            databases += 1
            path = tmp_path / f"migrating-{databases}.db"
            shutil.copy(untouched, path)
            version = 1
            while version < current and landed < MIGRATION_KILLS:
                hit = _kill_migration(
                    spawner, f"sqlite://{path}", rng.uniform(0, duration), cli=True, where=where
                )
                landed += hit
                # One timing of a noisy machine can be far off: a kill too late narrows the window.
                duration *= 1 if hit else 0.7
                version = _check_migrated_sqlite(path, expected, expected_fk, current, where)
                versions_seen.append(version)
            _migrate_to_the_end(spawner, f"sqlite://{path}", cli=True, where=where)
            assert sqlite_file_dump(path) == expected[current], (
                f"the rerun differs from migrating the untouched copy ({where})"
            )
        print(
            f"sqlite migration: {landed} kills on {databases} databases, untouched migration"
            f" {duration:.2f}s, versions after each kill {versions_seen}"
        )
    finally:
        spawner.close()


def _migrate_to_the_end(spawner: Spawner, url: str, *, cli: bool, where: str) -> float:
    """Migrate ``url`` in a child, to the end; seconds it took (from the runner's start
    for the Python API, from the command's start for ``polylogue migrate``)."""
    child = spawner.take()
    started = time.perf_counter()
    child.go(json.dumps({"url": url, "cli": cli}))
    if not cli:
        assert child.readline() == "migrating", f"({where}): {child.stderr()}"
        started = time.perf_counter()
        assert child.readline() == "migrated", f"({where}): {child.stderr()}"
        duration = time.perf_counter() - started
    child.rest()
    if cli:
        duration = time.perf_counter() - started
    assert child.finish() == 0, f"migrating {url} failed ({where}): {child.stderr()}"
    return duration


def _kill_migration(spawner: Spawner, url: str, pause: float, *, cli: bool, where: str) -> bool:
    """Start migrating ``url`` in a child, SIGKILL it ``pause`` seconds after the command
    (``cli``) or the runner started; True when it was still migrating."""
    child = spawner.take()
    child.go(json.dumps({"url": url, "cli": cli}))
    if not cli:
        assert child.readline() == "migrating", f"({where}): {child.stderr()}"
    time.sleep(pause)
    sent = child.kill()
    # The command names the version it ended at once it is done; the API says "migrated".
    lines = child.rest()
    finished = any("schema version" in line if cli else line == "migrated" for line in lines)
    if not sent:
        assert child.proc.returncode == 0, f"migrating {url} failed ({where}): {child.stderr()}"
    return sent and not finished


def _check_migrated_sqlite(
    path: Path,
    expected: dict[int, dict[str, Any]],
    expected_fk: dict[int, list[tuple[Any, ...]]],
    current: int,
    where: str,
) -> int:
    """The version a killed migration left ``path`` at, after checking it is exactly that."""
    assert sqlite_integrity(path) == ["ok"], f"integrity_check after a kill ({where})"
    dump = sqlite_file_dump(path)
    version = dump["(user_version)"]
    assert 1 <= version <= current, f"version {version} after a kill ({where})"
    if dump != expected[version]:
        differing = sorted(
            k for k in set(dump) | set(expected[version]) if dump.get(k) != expected[version].get(k)
        )
        raise AssertionError(
            f"after a kill the file is at version {version} but its {differing} differ from"
            f" the untouched copy migrated to {version} ({where})"
        )
    assert sqlite_foreign_key_check(path) == expected_fk[version], (
        f"foreign_key_check at version {version} after a kill ({where})"
    )
    return int(version)


@pytest.mark.parametrize("family", ["duckdb", "postgresql"])
def test_killed_baseline_migration_leaves_nothing_or_everything(
    family: str, tmp_path: Path
) -> None:
    """The baseline migration of an empty database, killed until it finishes, then rerun."""
    where = _where(f"{family} migration")
    print(where)
    if family == "duckdb":
        pytest.importorskip("duckdb")
    rng = random.Random(f"{SEED}:migrate:{family}")
    with ExitStack() as stack:
        target = TARGETS[family](tmp_path, stack)
        spawner = Spawner(MIGRATE_CHILD, [target.module])
        stack.callback(spawner.close)

        url = target.empty_database()
        duration = _migrate_to_the_end(spawner, url, cli=False, where=where)
        with target.open(url) as backend:
            current = backend.migration_runner().target_version
            assert backend.schema_version() == current
            reference = canonical_dump(backend, with_schema=True)

        landed, databases, versions_seen = 0, 0, []
        while landed < MIGRATION_KILLS:
            assert len(versions_seen) <= 3 * MIGRATION_KILLS, f"kills do not land ({where})"
            databases += 1
            url = target.empty_database()
            version = 0
            while version == 0 and landed < MIGRATION_KILLS:
                hit = _kill_migration(
                    spawner, url, rng.uniform(0, 1.5 * duration), cli=False, where=where
                )
                landed += hit
                # One timing of a noisy machine can be far off: a kill too late narrows the window.
                duration *= 1 if hit else 0.7
                target.after_kill(url)
                with target.open(url) as backend:
                    version = backend.schema_version()
                    assert version in (0, current), f"version {version} after a kill ({where})"
                    if version == 0:
                        assert table_names(backend) == [], f"half a schema after a kill ({where})"
                    else:
                        assert canonical_dump(backend, with_schema=True) == reference, where
                versions_seen.append(version)
            _migrate_to_the_end(spawner, url, cli=True, where=where)
            with target.open(url) as backend:
                assert backend.schema_version() == current, where
                assert canonical_dump(backend, with_schema=True) == reference, where
        print(
            f"{family} migration: {landed} kills on {databases} databases, migration"
            f" {duration:.2f}s, versions after each kill {versions_seen}"
        )
