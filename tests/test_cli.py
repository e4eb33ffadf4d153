"""The polylogue command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from polylogue.cli import main
from polylogue.storage.backends import SQLiteBackend
from polylogue.storage.migration_scripts import discover
from polylogue.storage.repository import StorageRepository
from tests.records import bundle


def test_migrate_then_status(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'a.db'}"
    scripts = discover("sqlite")
    version = scripts[-1].version
    runner = CliRunner()
    dry = runner.invoke(main, ["migrate", "--url", url, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("would apply") == len(scripts)
    assert SQLiteBackend(tmp_path / "a.db", migrate=False).schema_version() == 0
    done = runner.invoke(main, ["migrate", "--url", url])
    assert done.exit_code == 0 and f"now at schema version {version}" in done.output
    again = runner.invoke(main, ["migrate", "--url", url])
    assert f"up to date at schema version {version}" in again.output
    status = runner.invoke(main, ["status", "--url", url])
    assert status.exit_code == 0
    assert f"schema version: {version} (code: {version})" in status.output
    assert status.output.count("sha256:") == len(scripts)
    assert "pending:\n  (none)" in status.output and "drift:\n  (none)" in status.output


def test_errors_exit_nonzero_on_stderr(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["status", "--url", "mysql://root@localhost/x"])
    assert result.exit_code == 1
    assert "unknown database URL scheme 'mysql'" in result.stderr
    assert result.stdout == ""
    bad_option = runner.invoke(main, ["status", "--url", f"sqlite://{tmp_path}/a.db?colour=red"])
    assert bad_option.exit_code == 1 and "colour" in bad_option.stderr
    usage = runner.invoke(main, ["migrate", "--bogus"])
    assert usage.exit_code == 2


def test_stats_prints_counts(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "a.db")
    repo = StorageRepository(backend)
    for cid in ("c1", "c2"):
        conv, messages, attachments = bundle(cid, 3, ("a",))
        repo.save_conversation(conversation=conv, messages=messages, attachments=attachments)
    backend.close()
    result = CliRunner().invoke(main, ["stats", "--url", f"sqlite://{tmp_path / 'a.db'}", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [row] = data["providers"]
    assert {k: row[k] for k in ("provider_name", "conversations", "messages", "attachments")} == {
        "provider_name": "chatgpt",
        "conversations": 2,
        "messages": 6,
        "attachments": 2,
    }
    assert data["totals"]["messages"] == 6 and data["totals"]["text_chars"] == row["text_chars"]
    table = CliRunner().invoke(main, ["stats", "--url", f"sqlite://{tmp_path / 'a.db'}"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    header = next(line for line in lines if line.startswith("provider "))
    assert header.split()[:4] == ["provider", "conversations", "messages", "attachments"]
    assert "first message" in header and "last message" in header
    assert any(line.split()[:4] == ["chatgpt", "2", "6", "2"] for line in lines)
    assert any(line.split()[:4] == ["total", "2", "6", "2"] for line in lines)
    assert "2024-01" in table.output


def test_environment_variable_selects_the_database(tmp_path: Path) -> None:
    env = {**os.environ, "POLYLOGUE_DATABASE_URL": f"sqlite://{tmp_path / 'env.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "polylogue", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "env.db") in result.stdout
    assert (tmp_path / "env.db").exists()
