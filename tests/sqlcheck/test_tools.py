"""SQL overrides (``sql_dir=``, ``POLYLOGUE_SQL_DIR``) and ``polylogue sql new-migration``,
``show`` and ``explain``, on real databases."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from polylogue.cli import main
from polylogue.cli.sql_tools import checkout_migrations_dir
from polylogue.errors import ConfigurationError, QuerySetError
from polylogue.storage.backends import SQLBackend, backend_class, create_backend
from polylogue.storage.backends.duckdb.backend import DuckDBBackend
from polylogue.storage.backends.duckdb.unchanged import UNCHANGED_READS
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.borrowed import BorrowedSQLiteBackend
from polylogue.storage.migration_scripts import discover
from polylogue.storage.queries import METHOD_QUERIES
from polylogue.storage.sqlfiles import ENV_SQL_DIR, resource_dir
from tests.records import conversation, message
from tests.support_postgres import fresh_schema, server_url

DIALECTS = ("sqlite", "postgresql", "duckdb")

OpenBackend = Callable[[Path, Path | None], AbstractContextManager[SQLBackend]]


@contextmanager
def _sqlite(tmp: Path, sql_dir: Path | None) -> Iterator[SQLBackend]:
    backend = SQLiteBackend(tmp / "archive.db", sql_dir=sql_dir)
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def _duckdb(tmp: Path, sql_dir: Path | None) -> Iterator[SQLBackend]:
    backend = DuckDBBackend(tmp / "archive.duckdb", sql_dir=sql_dir)
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def _postgres(tmp: Path, sql_dir: Path | None) -> Iterator[SQLBackend]:
    from polylogue.storage.backends.postgresql.backend import PostgresBackend

    with fresh_schema() as schema:
        backend = PostgresBackend(server_url(), schema=schema, sql_dir=sql_dir)
        try:
            yield backend
        finally:
            backend.close()


OPENERS: dict[str, OpenBackend] = {"sqlite": _sqlite, "postgresql": _postgres, "duckdb": _duckdb}


def copy_sql(tmp: Path, *dialects: str) -> Path:
    """An override folder holding a copy of the packaged query files of ``dialects``."""
    root = tmp / "sql-override"
    for dialect in dialects:
        shutil.copytree(resource_dir("sql", dialect), root / dialect)
    return root


def name_line(path: Path, name: str) -> int:
    """The 1-based line of ``-- name: <name>`` in ``path``."""
    for n, text in enumerate(path.read_text().splitlines(), start=1):
        if re.match(rf"--\s*name:\s*{name}\b", text):
            return n
    raise AssertionError(f"{path} has no query {name}")


def edit_query(path: Path, name: str, change: Callable[[str], str]) -> None:
    """Apply ``change`` to the text of query ``name`` only (header to the next header)."""
    lines = path.read_text().splitlines(keepends=True)
    start = name_line(path, name) - 1
    stop = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("-- name:")), len(lines)
    )
    block = "".join(lines[start:stop])
    changed = change(block)
    assert changed != block, f"the edit of {name} changed nothing"
    path.write_text("".join(lines[:start]) + changed + "".join(lines[stop:]))


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["sql", *args])


# -- overrides -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_override_that_drops_a_parameter_is_refused_naming_file_line_query(
    dialect: str, tmp_path: Path
) -> None:
    root = copy_sql(tmp_path, dialect)
    messages = root / dialect / "messages.sql"
    line = name_line(messages, "get_messages")
    edit_query(
        messages,
        "get_messages",
        lambda text: text.replace("get_messages(conversation_id)", "get_messages()", 1),
    )
    with pytest.raises(QuerySetError) as info, OPENERS[dialect](tmp_path, root):
        pass
    message = str(info.value)
    assert str(root) in message
    assert f"messages.sql:{line}: query get_messages" in message
    assert "conversation_id" in message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_override_whose_parameter_list_differs_is_refused(dialect: str, tmp_path: Path) -> None:
    root = copy_sql(tmp_path, dialect)
    messages = root / dialect / "messages.sql"
    line = name_line(messages, "get_messages")
    # Dropped from the header and the body alike: it parses, but the binding passes it.
    edit_query(
        messages,
        "get_messages",
        lambda text: text.replace("get_messages(conversation_id)", "get_messages()", 1).replace(
            ":conversation_id", "'c1'"
        ),
    )
    with pytest.raises(QuerySetError) as info, OPENERS[dialect](tmp_path, root):
        pass
    message = str(info.value)
    assert str(root) in message
    assert (
        f"messages.sql:{line}: query get_messages declares parameters () but the binding"
        " passes (conversation_id)"
    ) in message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_override_with_a_misspelled_query_name_is_refused(dialect: str, tmp_path: Path) -> None:
    root = copy_sql(tmp_path, dialect)
    runs = root / dialect / "runs.sql"
    line = name_line(runs, "get_runs")
    edit_query(runs, "get_runs", lambda text: text.replace("get_runs(", "get_rusn(", 1))
    with pytest.raises(QuerySetError) as info, OPENERS[dialect](tmp_path, root):
        pass
    message = str(info.value)
    assert str(root) in message
    assert f"runs.sql:{line}: query get_rusn is not used by the binding" in message
    assert "runs.sql: no query named get_runs" in message


def _order_by_id_descending(path: Path) -> None:
    edit_query(
        path,
        "list_conversations",
        lambda text: re.sub(
            r"ORDER BY.*?(?=LIMIT)", "ORDER BY conversation_id DESC\n", text, flags=re.S
        ),
    )


def _three_conversations(backend: SQLBackend) -> list[str]:
    """Saved newest first by id: the packaged order (updated_at descending) is c1, c2, c3."""
    backend.save_conversations(
        [
            conversation("c1", updated_at="2024-01-03T00:00:00"),
            conversation("c2", updated_at="2024-01-02T00:00:00"),
            conversation("c3", updated_at="2024-01-01T00:00:00"),
        ]
    )
    return [c.conversation_id for c in backend.list_conversations()]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_working_override_is_the_sql_that_runs(dialect: str, tmp_path: Path) -> None:
    root = copy_sql(tmp_path, dialect)
    _order_by_id_descending(root / dialect / "conversations.sql")
    packaged_dir = tmp_path / "packaged"
    packaged_dir.mkdir()
    with OPENERS[dialect](packaged_dir, None) as backend:
        assert _three_conversations(backend) == ["c1", "c2", "c3"]
    with OPENERS[dialect](tmp_path, root) as backend:
        assert backend.sql_dir == root  # type: ignore[attr-defined]
        assert _three_conversations(backend) == ["c3", "c2", "c1"]


def test_the_environment_variable_names_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_sql(tmp_path, "sqlite", "duckdb")
    _order_by_id_descending(root / "sqlite" / "conversations.sql")
    _order_by_id_descending(root / "duckdb" / "conversations.sql")
    monkeypatch.setenv(ENV_SQL_DIR, str(root))
    with create_backend(db_path=tmp_path / "a.db") as backend:
        assert _three_conversations(backend) == ["c3", "c2", "c1"]
    with create_backend(f"duckdb:///{tmp_path / 'a.duckdb'}") as backend:
        assert _three_conversations(backend) == ["c3", "c2", "c1"]
    # The function API's backend over a caller's connection follows it too.
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.row_factory = sqlite3.Row
    try:
        borrowed = BorrowedSQLiteBackend(conn)
        assert borrowed.sql_dir == root
        assert [c.conversation_id for c in borrowed.list_conversations()] == ["c3", "c2", "c1"]
    finally:
        conn.close()
    # An explicit sql_dir wins over the variable.
    other = copy_sql(tmp_path / "other", "sqlite")
    with create_backend(db_path=tmp_path / "a.db", sql_dir=other) as backend:
        assert [c.conversation_id for c in backend.list_conversations()] == ["c1", "c2", "c3"]


def test_an_override_without_the_dialect_folder_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_sql(tmp_path, "sqlite")
    with pytest.raises(ConfigurationError, match=rf"{re.escape(str(root))} .*has no duckdb/"):
        DuckDBBackend(tmp_path / "a.duckdb", sql_dir=root)
    assert not (tmp_path / "a.duckdb").exists()
    monkeypatch.setenv(ENV_SQL_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match=r"nowhere .*does not exist"):
        create_backend(db_path=tmp_path / "b.db")


def test_an_override_edited_in_place_is_checked_again(tmp_path: Path) -> None:
    root = copy_sql(tmp_path, "sqlite")
    with SQLiteBackend(tmp_path / "a.db", sql_dir=root):
        pass
    runs = root / "sqlite" / "runs.sql"
    edit_query(runs, "get_runs", lambda text: text.replace("get_runs(", "get_rusn(", 1))
    with pytest.raises(QuerySetError, match="get_rusn is not used"):
        SQLiteBackend(tmp_path / "a.db", sql_dir=root)


def test_migrations_are_never_overridden(tmp_path: Path) -> None:
    root = copy_sql(tmp_path, "sqlite")
    # A migrations folder in the override is not read: the packaged scripts are applied.
    (root / "migrations" / "sqlite").mkdir(parents=True)
    (root / "migrations" / "sqlite" / "0005_broken.sql").write_text("NOT SQL;\n")
    with SQLiteBackend(tmp_path / "a.db", sql_dir=root) as backend:
        assert backend.schema_version() == discover("sqlite")[-1].version


# -- METHOD_QUERIES --------------------------------------------------------------------------


def test_every_method_query_is_a_query_of_some_dialect_and_every_method_exists() -> None:
    defined = {name for d in DIALECTS for name in backend_class(d).expected_queries()}  # type: ignore[arg-type]
    for method, names in METHOD_QUERIES.items():
        assert callable(getattr(SQLBackend, method)), method
        assert set(names) <= defined, (method, set(names) - defined)


# -- new-migration ---------------------------------------------------------------------------


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    copy = tmp_path / "migrations"
    shutil.copytree(checkout_migrations_dir(), copy)
    return copy


def test_new_migration_creates_the_next_number_in_every_dialect(migrations: Path) -> None:
    newest = max(discover(d, migrations / d)[-1].version for d in DIALECTS)
    result = run("new-migration", "add_message_index", "--migrations-dir", str(migrations))
    assert result.exit_code == 0, result.output
    number = f"{newest + 1:04d}"
    created = [migrations / d / f"{number}_add_message_index.sql" for d in sorted(DIALECTS)]
    assert result.output.split() == [str(p) for p in created]
    for dialect, path in zip(sorted(DIALECTS), created, strict=True):
        text = path.read_text()
        assert f"Write {dialect}'s statements" in text
        assert "polylogue sql check" in text
        assert "postgresql" in text and "duckdb" in text and "sqlite" in text
        assert discover(dialect, migrations / dialect)[-1].version == newest + 1
    again = run("new-migration", "add_runs_index", "--migrations-dir", str(migrations))
    assert again.exit_code == 0, again.output
    assert all(
        (migrations / d / f"{newest + 2:04d}_add_runs_index.sql").is_file() for d in DIALECTS
    )


def test_new_migration_refuses_duplicates_and_bad_slugs(migrations: Path) -> None:
    before = sorted(migrations.rglob("*.sql"))
    newest = max(discover(d, migrations / d)[-1].version for d in DIALECTS)
    # A number one dialect has already: the others would leave a gap or a clash.
    stray = migrations / "sqlite" / f"{newest + 1:04d}_half_done.sql"
    stray.write_text("SELECT 1;\n")
    result = run("new-migration", "add_x", "--migrations-dir", str(migrations))
    assert result.exit_code == 1
    assert f"number {newest + 1:04d} exists already" in result.output
    assert "duckdb, postgresql" in result.output
    stray.unlink()
    # A slug used before.
    used = discover("sqlite", migrations / "sqlite")[-1].path.stem[5:]
    result = run("new-migration", used, "--migrations-dir", str(migrations))
    assert result.exit_code == 1
    assert f"a migration named {used} exists already" in result.output
    result = run("new-migration", "Add-Index", "--migrations-dir", str(migrations))
    assert result.exit_code == 2
    assert "lower-case letters, digits and underscores" in result.output
    assert sorted(migrations.rglob("*.sql")) == before


def test_the_default_migrations_folder_is_the_checkouts() -> None:
    assert checkout_migrations_dir() == resource_dir("migrations", "sqlite").parent


# -- show ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_show_prints_a_methods_queries_with_file_and_line(dialect: str) -> None:
    result = run("show", "save_messages", "--dialect", dialect)
    assert result.exit_code == 0, result.output
    messages = resource_dir("sql", dialect) / "messages.sql"
    expected = {
        "sqlite": ["upsert_messages", "get_message_owner"],
        "postgresql": ["upsert_messages"],
        "duckdb": [
            "upsert_messages",
            "classify_messages",
            "insert_messages",
            "update_changed_messages",
        ],
    }[dialect]
    assert f"-- {dialect}: save_messages runs {', '.join(expected)} " in result.output
    places = re.findall(r"^-- (\S+):(\d+)$", result.output, flags=re.M)
    assert [(Path(p).name, int(n)) for p, n in places] == [
        ("messages.sql", name_line(messages, name)) for name in expected
    ]
    lines = messages.read_text().splitlines()
    for name in expected:
        header = lines[name_line(messages, name) - 1]
        assert f"{header}\n" in result.output


def test_show_lists_the_reads_duckdb_makes_before_saving_a_bundle() -> None:
    """DuckDB reads a bundle's stored rows first (to skip writes that change nothing)."""
    reads = ", ".join(UNCHANGED_READS)
    duckdb = run("show", "save_bundles", "--dialect", "duckdb")
    assert f"-- duckdb: save_bundles runs {reads}, upsert_conversations," in duckdb.output
    sqlite = run("show", "save_bundles", "--dialect", "sqlite")
    assert "-- sqlite: save_bundles runs upsert_conversations," in sqlite.output


@pytest.mark.parametrize("dialect", DIALECTS)
def test_show_prints_one_query_as_its_file_has_it(dialect: str) -> None:
    result = run("show", "upsert_messages", "--dialect", dialect)
    assert result.exit_code == 0, result.output
    messages = resource_dir("sql", dialect) / "messages.sql"
    line = name_line(messages, "upsert_messages")
    place, header, rest = result.output.split("\n", 2)
    assert re.fullmatch(rf"-- \S*{dialect}/messages\.sql:{line}", place)
    assert Path(place[3:].rsplit(":", 1)[0]).resolve() == messages.resolve()
    assert header.startswith("-- name: upsert_messages(")
    body = messages.read_text().split("-- name: upsert_messages(", 1)[1].split("-- name:", 1)[0]
    assert body.split("\n", 1)[1].strip() == rest.strip()


def test_show_reads_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = copy_sql(tmp_path, *DIALECTS)
    _order_by_id_descending(root / "sqlite" / "conversations.sql")
    monkeypatch.setenv(ENV_SQL_DIR, str(root))
    result = run("show", "list_conversations", "--dialect", "sqlite")
    assert result.exit_code == 0, result.output
    assert str(root / "sqlite" / "conversations.sql") in result.output
    assert "ORDER BY conversation_id DESC" in result.output


def test_show_names_close_matches_and_other_dialects() -> None:
    result = run("show", "get_mesages")
    assert result.exit_code == 1
    assert "'get_mesages' is no protocol method or named query" in result.output
    assert "get_messages" in result.output
    result = run("show", "lock_conversation", "--dialect", "sqlite")
    assert result.exit_code == 1
    assert "sqlite has no query lock_conversation; postgresql has" in result.output


# -- explain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "name", "plan_word"),
    [("sqlite", "a.db", "idx_messages_conversation"), ("duckdb", "a.duckdb", "messages")],
)
def test_explain_prints_the_plan_of_a_named_query(
    tmp_path: Path, scheme: str, name: str, plan_word: str
) -> None:
    url = f"{scheme}:///{tmp_path / name}"
    with create_backend(url) as backend:
        backend.save_conversations([conversation("c1")])
        backend.save_messages([message("m1", "c1"), message("m2", "c1")])
    result = run("explain", "get_messages", "--url", url, "--param", "conversation_id=c1")
    assert result.exit_code == 0, result.output
    header, *plan = result.output.splitlines()
    assert header.startswith("-- EXPLAIN") and "get_messages" in header
    assert plan and plan_word in result.output.split("\n", 1)[1]


@pytest.mark.parametrize("name", ["missing.db", "missing.duckdb"])
def test_explain_never_creates_a_database(tmp_path: Path, name: str) -> None:
    scheme = "sqlite" if name.endswith(".db") else "duckdb"
    result = run("explain", "get_messages", "--url", f"{scheme}:///{tmp_path / name}")
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert list(tmp_path.iterdir()) == []


def test_explain_refuses_unknown_queries_and_parameters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    create_backend(url).close()
    result = run("explain", "get_mesages", "--url", url)
    assert result.exit_code == 1
    assert "did you mean get_messages" in result.output
    result = run("explain", "get_messages", "--url", url, "--param", "max_rows=1")
    assert result.exit_code == 2
    assert "it takes (conversation_id)" in result.output
