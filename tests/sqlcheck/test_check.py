"""``polylogue sql check`` finds broken query files and drifting migrations, by file and line."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from polylogue.cli.sql_check import check_command
from polylogue.sqlcheck.contract import check_contract
from polylogue.sqlcheck.findings import Finding
from polylogue.sqlcheck.run import run_checks
from polylogue.sqlcheck.schema import check_schema
from polylogue.storage import rows
from polylogue.storage.queries import RESULT_COLUMNS
from polylogue.storage.sqlfiles import parse_query_folder, resource_dir
from tests.support_postgres import admin_execute, require_server

DIALECTS = ["sqlite", "duckdb", "postgresql"]
MIGRATIONS = resource_dir("migrations", "sqlite").parent


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of the shipped ``sql/`` (every dialect) to break."""
    copy = tmp_path / "sql"
    shutil.copytree(resource_dir("sql", "sqlite").parent, copy)
    return copy


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    return copy


def url_for(dialect: str) -> str | None:
    return require_server() if dialect == "postgresql" else None


def edit_query(folder: Path, file: str, name: str, old: str, new: str) -> int:
    """Replace ``old`` once inside query ``name``'s block; return its header line."""
    path = folder / file
    text = path.read_text()
    start = text.index(f"-- name: {name}(")
    end = text.find("-- name:", start + 1)
    end = len(text) if end < 0 else end
    block = text[start:end]
    assert old in block, (name, old)
    path.write_text(text[:start] + block.replace(old, new, 1) + text[end:])
    return text[:start].count("\n") + 1


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_misspelled_column_names_file_line_and_query(dialect: str, sql_copy: Path) -> None:
    line = edit_query(
        sql_copy / dialect, "messages.sql", "get_messages", "content_hash", "content_hsh"
    )
    found = errors(check_schema(dialect, sql_copy, MIGRATIONS, url_for(dialect)))
    assert len(found) == 1, found
    [finding] = found
    assert finding.file is not None and finding.file.endswith(f"{dialect}/messages.sql")
    assert (finding.line, finding.name) == (line, "get_messages")
    assert "content_hsh" in finding.message
    assert str(finding).startswith(f"{finding.file}:{line} get_messages: database error")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_syntax_error_in_a_body_is_caught(dialect: str, sql_copy: Path) -> None:
    line = edit_query(sql_copy / dialect, "runs.sql", "get_runs", "DESC,", "DESC,,")
    [finding] = errors(check_schema(dialect, sql_copy, MIGRATIONS, url_for(dialect)))
    assert (finding.line, finding.name) == (line, "get_runs")
    assert "database error" in finding.message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_renamed_result_column_is_caught(dialect: str, sql_copy: Path) -> None:
    line = edit_query(
        sql_copy / dialect, "messages.sql", "get_messages", "role,", "role AS speaker,"
    )
    found = errors(check_schema(dialect, sql_copy, MIGRATIONS, url_for(dialect)))
    assert [(f.line, f.name) for f in found] == [(line, "get_messages")]
    assert "returns no column role" in found[0].message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dropped_parameter_is_a_contract_failure_with_its_line(
    dialect: str, sql_copy: Path
) -> None:
    line = edit_query(
        sql_copy / dialect,
        "conversations.sql",
        "get_conversation",
        "get_conversation(conversation_id)",
        "get_conversation()",
    )
    [finding] = errors(check_contract(dialect, sql_copy))
    assert finding.file is not None and finding.file.endswith(f"{dialect}/conversations.sql")
    assert (finding.line, finding.name) == (line, "get_conversation")
    assert "undeclared parameter name in query get_conversation: conversation_id" in str(finding)


def test_a_misspelled_parameter_names_its_line(sql_copy: Path) -> None:
    line = edit_query(
        sql_copy / "sqlite",
        "messages.sql",
        "get_messages",
        "= :conversation_id",
        "= :conversaton_id",
    )
    [finding] = errors(check_contract("sqlite", sql_copy))
    assert re.fullmatch(
        rf".*sqlite/messages\.sql:{line} get_messages: cannot be parsed: undeclared parameter"
        r" name in query get_messages: conversaton_id",
        str(finding),
    )


def test_a_changed_parameter_list_and_an_unused_query(sql_copy: Path) -> None:
    path = sql_copy / "sqlite" / "runs.sql"
    path.write_text(path.read_text() + "\n-- name: unused_query()\nSELECT 1;\n")
    found = check_contract("sqlite", sql_copy)
    [unused] = found
    assert unused.severity == "warning" and unused.name == "unused_query"
    assert unused.line == path.read_text().splitlines().index("-- name: unused_query()") + 1


def write_migration(folder: Path, name: str, sql: str) -> Path:
    path = folder / name
    path.write_text(sql)
    return path


def test_a_column_added_in_one_dialect_only_is_parity_drift(migrations_copy: Path) -> None:
    write_migration(
        migrations_copy / "sqlite",
        "0005_runs_note.sql",
        "-- A note per run.\nALTER TABLE runs ADD COLUMN note TEXT;\n",
    )
    write_migration(
        migrations_copy / "duckdb", "0005_runs_note.sql", "-- Forgot the column.\nSELECT 1;\n"
    )
    found = run_checks(["sqlite", "duckdb"], migrations_dir=migrations_copy)
    parity = [f for f in errors(found) if f.check == "parity"]
    assert len(parity) == 1, parity
    [drift] = parity
    assert drift.name == "runs.note" and "column runs.note" in drift.message
    assert drift.file is not None and drift.file.endswith("sqlite/0005_runs_note.sql")
    assert drift.line == 2


def test_the_intended_differences_are_not_reported() -> None:
    # DuckDB's missing foreign keys and indexes, SQLite's JSON as TEXT: all allowed.
    found = run_checks(["sqlite", "duckdb"])
    assert [f for f in found if f.check == "parity"] == []


def test_a_migration_number_missing_in_one_dialect_is_reported(migrations_copy: Path) -> None:
    write_migration(
        migrations_copy / "sqlite",
        "0005_runs_note.sql",
        "-- A note per run.\nALTER TABLE runs ADD COLUMN note TEXT;\n",
    )
    found = run_checks(["sqlite", "duckdb"], migrations_dir=migrations_copy)
    numbers = [f for f in found if f.check == "parity" and "0005" in f.message]
    assert len(numbers) == 1, numbers
    assert numbers[0].dialect == "duckdb"
    assert "add migrations/duckdb/0005_runs_note.sql" in numbers[0].message


def test_a_numbering_gap_and_a_bad_name_are_reported(migrations_copy: Path) -> None:
    write_migration(migrations_copy / "sqlite", "0007_later.sql", "SELECT 1;\n")
    write_migration(migrations_copy / "sqlite", "5_bad.sql", "SELECT 1;\n")
    found = [f for f in run_checks(["sqlite"], migrations_dir=migrations_copy)]
    messages = [str(f) for f in found if f.check == "migrations"]
    assert any(
        "0007_later.sql:1" in m and "no script for version 0005, 0006" in m for m in messages
    )
    assert any("5_bad.sql:1" in m and "NNNN_short_slug.sql" in m for m in messages)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(check_command, list(args), catch_exceptions=False)


def test_json_output_has_one_entry_per_finding(sql_copy: Path) -> None:
    edit_query(sql_copy / "sqlite", "messages.sql", "get_messages", "content_hash", "content_hsh")
    edit_query(sql_copy / "sqlite", "runs.sql", "get_runs", "DESC,", "DESC,,")
    result = invoke("--dialect", "sqlite", "--sql-dir", str(sql_copy), "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    expected = run_checks(["sqlite"], sql_dir=sql_copy)
    assert report["findings"] == [f.to_json() for f in expected]
    assert report["errors"] == 2 == len(report["findings"])
    assert {f["name"] for f in report["findings"]} == {"get_messages", "get_runs"}


def test_text_output_is_one_line_per_finding_then_a_summary(sql_copy: Path) -> None:
    line = edit_query(
        sql_copy / "duckdb", "messages.sql", "get_messages", "content_hash", "content_hsh"
    )
    result = invoke("--dialect", "duckdb", "--sql-dir", str(sql_copy))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "== schema"
    assert re.match(rf".*duckdb/messages\.sql:{line} get_messages: database error", lines[1])
    assert lines[-1] == "1 errors, 0 warnings"


def test_the_shipped_repository_is_clean_on_all_three_dialects() -> None:
    result = invoke("--url", require_server())
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "0 errors, 0 warnings"
    # The PostgreSQL scratch schemas are dropped.
    assert (
        admin_execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'polylogue\\_check\\_%'")
        == []
    )


def test_without_a_server_postgresql_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYLOGUE_DATABASE_URL", raising=False)
    [finding] = check_schema("postgresql", resource_dir("sql", "sqlite").parent, MIGRATIONS)
    assert finding.severity == "not-checked"


def test_sqlite_and_duckdb_check_in_under_five_seconds() -> None:
    started = time.perf_counter()
    result = invoke("--dialect", "sqlite", "--dialect", "duckdb")
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert elapsed < 5, f"{elapsed:.1f} s"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_catalog_queries_are_a_namespace_the_contract_does_not_see(dialect: str) -> None:
    folder = resource_dir("sql", dialect)
    top, _ = parse_query_folder(folder)
    checks, problems = parse_query_folder(folder / "checks")
    assert not problems
    catalog = {q.name for q in checks if q.path.name == "catalog.sql"}
    assert catalog == {
        "catalog_columns",
        "catalog_primary_keys",
        "catalog_foreign_keys",
        "catalog_indexes",
    }
    assert not catalog & {q.name for q in top}


class _Recording(dict[str, Any]):
    """A row that records which keys the reader takes."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.read.append(key)
        return None


@pytest.mark.parametrize(
    ("reader", "query"),
    [
        (rows.conversation_from_row, "get_conversation"),
        (rows.conversation_from_row, "list_conversations"),
        (rows.message_from_row, "get_messages"),
        (rows.attachment_from_row, "get_attachments"),
        (rows.run_from_row, "get_runs"),
    ],
)
def test_result_columns_are_what_the_readers_read(reader: Any, query: str) -> None:
    row = _Recording()
    reader(row)
    assert sorted(row.read) == sorted(RESULT_COLUMNS[query])
