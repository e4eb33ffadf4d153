"""Reading never writes: read-only opens and the read commands (status, stats).

A read command on a database that does not exist says so and creates nothing; one on a
database that needs migrating reports it and leaves it as it was; a read-only open of a
SQLite or DuckDB file changes no byte of it, even as a user who may not write the file or
its folder.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from polylogue.cli import main
from polylogue.errors import DatabaseError, DatabaseNotFoundError, MigrationError
from polylogue.storage.backends import create_backend
from polylogue.storage.migration_scripts import discover
from tests.records import conversation, message
from tests.reliability._environment import as_other_user, give_to_nobody, shared_folder

FILE_KINDS = ("sqlite", "duckdb")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_archive(kind: str, path: Path) -> str:
    url = f"{kind}://{path}"
    backend = create_backend(url)
    try:
        backend.save_conversation(conversation("c1"))
        backend.save_messages([message("m1", "c1", timestamp="2024-05-01T00:00:00Z")])
    finally:
        backend.close()
    return url


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("command", ["status", "stats"])
def test_read_commands_on_a_missing_database_create_nothing(
    kind: str, command: str, tmp_path: Path
) -> None:
    target = tmp_path / "not" / "there" / f"archive.{kind}"
    result = CliRunner().invoke(main, [command, "--url", f"{kind}://{target}"])
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "does not exist" in line and str(target) in line
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_read_only_open_refuses_a_missing_file(kind: str, tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotFoundError, match="does not exist"):
        create_backend(f"{kind}://{tmp_path / 'missing.db'}", read_only=True)
    with pytest.raises(DatabaseNotFoundError, match="does not exist"):
        create_backend(f"{kind}://{tmp_path / 'missing.db'}?read_only=true")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_read_only_open_reads_and_refuses_writes_changing_nothing(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / f"a.{kind}"
    url = make_archive(kind, path)
    before = digest(path)
    reader = create_backend(url, read_only=True)
    try:
        assert reader.describe().endswith("(read-only)")
        assert [c.conversation_id for c in reader.list_conversations_by_id()] == ["c1"]
        assert reader.count_rows()["messages"] == 1
        with pytest.raises(DatabaseError, match="read-only"):
            reader.save_conversation(conversation("c2"))
    finally:
        reader.close()
    assert digest(path) == before


def test_sqlite_memory_cannot_be_read_only() -> None:
    with pytest.raises(DatabaseError, match="needs a file"):
        create_backend("sqlite://:memory:", read_only=True)


def old_sqlite_archive(path: Path) -> int:
    """A SQLite archive one schema version behind this code; returns that version."""
    url = make_archive("sqlite", path)
    assert url
    newest = discover("sqlite")[-1].version
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {newest - 1}")
    conn.execute("DELETE FROM schema_migrations WHERE version = ?", (newest,))
    conn.commit()
    conn.close()
    return newest - 1


def test_a_database_that_needs_migrating_is_reported_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = old_sqlite_archive(path)
    newest = discover("sqlite")[-1].version
    before = digest(path)
    url = f"sqlite://{path}"
    stats = CliRunner().invoke(main, ["stats", "--url", url])
    assert stats.exit_code == 1
    assert f"schema version {old}, this code needs {newest}" in stats.stderr
    assert "polylogue migrate" in stats.stderr
    status = CliRunner().invoke(main, ["status", "--url", url])
    assert status.exit_code == 0, status.output
    assert f"schema version: {old} (code: {newest})" in status.output
    with pytest.raises(MigrationError, match="nothing was changed"):
        create_backend(url, read_only=True)
    assert digest(path) == before
    assert not list(tmp_path.glob("*.bak"))


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_stats_reads_an_archive_nobody_may_write(kind: str) -> None:
    """A 0444 archive in a 0555 folder, read by a user who owns neither (root ignores
    permissions, so the reading runs as ``nobody``)."""
    with shared_folder() as folder:
        path = folder / f"a.{kind}"
        url = make_archive(kind, path)
        os.chmod(path, 0o444)
        os.chmod(folder, 0o555)
        before = digest(path)
        listing = sorted(p.name for p in folder.iterdir())

        def read(command: list[str]) -> Callable[[], tuple[int, str, str]]:
            def work() -> tuple[int, str, str]:
                result = CliRunner().invoke(main, [*command, "--url", url])
                return result.exit_code, result.stdout, result.stderr

            return work

        code, out, err = as_other_user(read(["stats", "--json"]))
        assert code == 0, err
        assert '"messages": 1' in out
        code, out, err = as_other_user(read(["status"]))
        assert code == 0, err
        assert digest(path) == before
        assert sorted(p.name for p in folder.iterdir()) == listing
        give_to_nobody(folder)  # let the cleanup of shared_folder remove it as root anyway


def test_postgres_stats_on_an_empty_schema_creates_nothing() -> None:
    from tests.support_postgres import admin_execute, fresh_schema, server_url

    with fresh_schema() as schema:
        sep = "&" if "?" in server_url() else "?"
        url = f"{server_url()}{sep}schema={schema}"
        result = CliRunner().invoke(main, ["stats", "--url", url])
        assert result.exit_code == 1
        assert "schema version 0" in result.stderr and "polylogue migrate" in result.stderr
        found = admin_execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        )
        assert found == []
