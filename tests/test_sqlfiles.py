"""The query-set loader refuses SQL files that do not match the binding, naming file and query."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from polylogue.errors import QuerySetError
from polylogue.storage.backends.base import QUERIES, SQLBackend
from polylogue.storage.backends.duckdb.backend import DuckDBBackend
from polylogue.storage.backends.postgresql.backend import PostgresBackend
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.queries import LIST_QUERIES, ROW_LOCK_QUERIES, SPLIT_UPSERT_QUERIES
from polylogue.storage.sqlfiles import QuerySpec, check_query_set, resource_dir

EXPECTED = {**QUERIES, **SQLiteBackend.dialect_queries}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "sqlite"
    shutil.copytree(resource_dir("sql", "sqlite"), copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_shipped_query_set_matches(folder: Path) -> None:
    check_query_set(folder, EXPECTED)


def test_changed_parameter_list_is_named(folder: Path) -> None:
    edit(
        folder / "messages.sql",
        "get_messages(conversation_id)",
        "get_messages(conversation_id, max_rows)",
    )
    edit(
        folder / "messages.sql",
        "WHERE conversation_id = :conversation_id\nORDER BY",
        "WHERE conversation_id = :conversation_id AND :max_rows IS NULL\nORDER BY",
    )
    with pytest.raises(QuerySetError) as info:
        check_query_set(folder, EXPECTED)
    assert re.search(
        r"messages\.sql:\d+: query get_messages declares parameters"
        r" \(conversation_id, max_rows\) but the binding passes \(conversation_id\)",
        str(info.value),
    )


def test_missing_query_is_named_with_its_file(folder: Path) -> None:
    edit(folder / "runs.sql", "-- name: get_runs(max_rows)", "-- name: recent_runs(max_rows)")
    with pytest.raises(QuerySetError) as info:
        check_query_set(folder, EXPECTED)
    assert "runs.sql: no query named get_runs" in str(info.value)
    assert "query recent_runs is not used by the binding" in str(info.value)


def test_wrong_operation_and_wrong_file(folder: Path) -> None:
    edit(
        folder / "conversations.sql",
        "-- name: get_conversation(conversation_id)^",
        "-- name: get_conversation(conversation_id)",
    )
    text = (folder / "runs.sql").read_text()
    start = text.index("-- name: get_runs")
    (folder / "runs.sql").write_text(text[:start])
    (folder / "stats.sql").write_text((folder / "stats.sql").read_text() + "\n" + text[start:])
    with pytest.raises(QuerySetError) as info:
        check_query_set(folder, EXPECTED)
    message = str(info.value)
    assert "query get_conversation has operation '(select)', expected '^'" in message
    assert "query get_runs belongs in runs.sql" in message


def test_duplicate_names_are_refused(folder: Path) -> None:
    (folder / "extra.sql").write_text(
        "-- name: get_messages(conversation_id)\nSELECT :conversation_id;\n"
    )
    with pytest.raises(QuerySetError, match="get_messages is also defined in"):
        check_query_set(folder, EXPECTED)


def test_undeclared_parameter_is_a_load_error(folder: Path) -> None:
    edit(folder / "runs.sql", "LIMIT coalesce(:max_rows, -1);", "LIMIT coalesce(:max_row, -1);")
    with pytest.raises(QuerySetError, match=r"runs\.sql"):
        check_query_set(folder, EXPECTED)


def test_bulk_queries_may_be_row_wise_or_columnar() -> None:
    spec = QuerySpec("messages.sql", ("message_id",), "*!", bulk=True)
    assert spec.accepts("*!") and spec.accepts("!") and not spec.accepts("")
    assert not QuerySpec("runs.sql", (), "!").accepts("*!")


DIALECTS = [SQLiteBackend, DuckDBBackend, PostgresBackend]


def test_each_dialect_has_one_name_its_folders_too() -> None:
    # One name per dialect: the class's ``dialect`` is its folder under sql/ and migrations/,
    # and no folder goes by another name (PostgreSQL's were once ``postgres``).
    names = {backend.dialect for backend in DIALECTS}
    assert names == {"sqlite", "postgresql", "duckdb"}
    for kind in ("sql", "migrations"):
        root = resource_dir(kind, "sqlite").parent
        assert {p.name for p in root.iterdir() if p.is_dir()} == names, kind


@pytest.mark.parametrize("backend", DIALECTS, ids=lambda cls: cls.dialect)
def test_every_dialect_defines_the_contract_and_what_its_capabilities_call(
    backend: type[SQLBackend],
) -> None:
    folder = resource_dir("sql", backend.dialect)
    check_query_set(folder, backend.expected_queries())
    # One contract: what the binding calls on every dialect is in every folder, even
    # where a bulk form is row-wise (SQLite's upsert_conversations).
    assert QUERIES.keys() <= backend.expected_queries().keys()


@pytest.mark.parametrize(
    ("capability", "value", "query"),
    [
        ("binds_lists", True, "prune_attachment_refs_many"),
        ("row_locks", True, "lock_attachments"),
        ("split_upsert_rows", 10, "classify_messages"),
    ],
)
def test_a_capability_names_the_queries_it_needs(
    capability: str, value: object, query: str
) -> None:
    expected = {**LIST_QUERIES, **ROW_LOCK_QUERIES, **SPLIT_UPSERT_QUERIES}
    assert query in expected
    claims = type("Claims", (SQLiteBackend,), {capability: value})
    with pytest.raises(QuerySetError, match=rf"no query named {query} \(the binding calls it\)"):
        check_query_set(resource_dir("sql", "sqlite"), claims.expected_queries())


def test_the_binding_never_asks_which_queries_exist() -> None:
    # Dialects differ by the shape of a query or a capability flag, never by its absence.
    assert not hasattr(SQLBackend, "_has_query")
    assert "upsert_conversations" in QUERIES
