"""One migration runner over every backend: the backend itself is the runner's target.

The runner decides the order of things once; a dialect only declares queries (locks, version,
checks) and lends its connection and transaction verbs. These tests drive a new schema
version through that one path on every backend the suite runs.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from polylogue.errors import MigrationError
from polylogue.storage.backends import SQLBackend, SQLiteBackend
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.migration_scripts import discover
from polylogue.storage.sqlfiles import resource_dir

PROBE = "CREATE TABLE migration_probe (probe_id INTEGER PRIMARY KEY);\n"
FAILING = PROBE + "SELECT missing_column FROM migration_probe;\n"


def with_next_script(backend: SQLBackend, tmp_path: Path, sql: str) -> tuple[Path, int]:
    """The packaged scripts of ``backend``'s dialect plus one more (the next version)."""
    folder = tmp_path / f"migrations-{backend.migration_dialect}"
    shutil.copytree(resource_dir("migrations", backend.migration_dialect), folder)
    version = discover(backend.migration_dialect)[-1].version + 1
    (folder / f"{version:04d}_probe.sql").write_text(sql)
    return folder, version


def test_the_runner_takes_any_backend_and_applies_a_new_version_once(
    backend: SQLBackend, tmp_path: Path
) -> None:
    folder, version = with_next_script(backend, tmp_path, PROBE)
    runner = MigrationRunner(backend, folder)
    assert [s.version for s in runner.status().pending] == [version]

    assert [s.version for s in runner.migrate()] == [version]

    assert backend.schema_version() == version
    status = runner.status()
    assert status.pending == [] and status.current_version == version
    assert status.applied[-1].version == version and not status.changed
    assert runner.migrate() == []


def test_a_failing_script_leaves_nothing_on_every_backend(
    backend: SQLBackend, tmp_path: Path
) -> None:
    before = backend.schema_version()
    folder, version = with_next_script(backend, tmp_path, FAILING)

    with pytest.raises(MigrationError, match=f"{version:04d}_probe.sql failed") as caught:
        MigrationRunner(backend, folder).migrate()

    assert f"still at version {before}" in str(caught.value)
    assert backend.schema_version() == before
    # The table the script created first was rolled back with it: creating it again works.
    (folder / f"{version:04d}_probe.sql").write_text(PROBE)
    assert [s.version for s in MigrationRunner(backend, folder).migrate()] == [version]


def test_adopting_unrecorded_versions_keeps_sqlites_user_version(tmp_path: Path) -> None:
    """Recording the versions of a database made before ``schema_migrations`` must not
    move ``PRAGMA user_version`` (the version lives there on SQLite)."""
    path = tmp_path / "archive.db"
    SQLiteBackend(path).close()
    newest = discover("sqlite")[-1].version
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM schema_migrations WHERE version < ?", (newest,))
    conn.commit()
    conn.close()

    with SQLiteBackend(path, migrate=False) as backend:
        runner = backend.migration_runner()
        assert runner.status().unrecorded == list(range(1, newest))
        assert runner.migrate() == []
        assert runner.status().unrecorded == []
        assert backend.schema_version() == newest
