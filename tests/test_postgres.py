"""What only the PostgreSQL backend has to show, against a real server.

Migrations (concurrent migrators, a no-transaction script, a failing script), the U+0000
escape as stored and as read back, passwords in DSNs, pool options from the URL, a server
restart in the middle of a run, and the ``polylogue`` command on a fresh schema. The
shared behaviour is in the conformance suite, which runs here too (``tests/conftest.py``).
"""

# ruff: noqa: E402 (the imports below need psycopg, checked first)
from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Without the postgres extra this module is skipped, not an import error.
psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from polylogue.cli import main
from polylogue.errors import (
    ConfigurationError,
    DatabaseError,
    IntegrityError,
    MessageOwnershipError,
    MigrationError,
    OperationalError,
)
from polylogue.storage.backends import BackendConfig, create_backend
from polylogue.storage.backends.postgresql.adapter import FaithfulPsycopgAdapter
from polylogue.storage.backends.postgresql.backend import PostgresBackend
from polylogue.storage.backends.postgresql.migrate import (
    migration_lock_key,
    statement_complete,
)
from polylogue.storage.backends.postgresql.pipelined import PIPELINE_CHUNK
from polylogue.storage.backends.postgresql.values import MARKER, escape, store_json_text, unescape
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.migration_scripts import discover, iter_statements
from polylogue.storage.records import ConversationRecord, MessageRecord
from polylogue.storage.repository import StorageRepository
from polylogue.storage.sqlfiles import resource_dir
from tests.records import attachment, bundle, conversation, message
from tests.support_postgres import (
    admin_execute,
    fresh_schema,
    require_server,
    role_with_password,
    server_url,
)

BASELINE = resource_dir("migrations", "postgresql") / "0004_baseline.sql"
SCRIPTS = discover("postgresql")
VERSION = SCRIPTS[-1].version
"""The schema version this code migrates PostgreSQL schemas to."""


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def url_with(schema: str, base: str | None = None, **options: Any) -> str:
    base = base or server_url()
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    return f"{base}{'&' if '?' in base else '?'}{query}"


def schema_exists(name: str) -> bool:
    return bool(admin_execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)))


def migrations_folder(tmp_path: Path, **scripts: str) -> Path:
    """The packaged baseline plus ``scripts`` ({"0005_x": sql}) in a folder of the test's."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(BASELINE, folder / BASELINE.name)
    for name, sql in scripts.items():
        (folder / f"{name}.sql").write_text(sql)
    return folder


def runner_for(schema: str, folder: Path) -> tuple[PostgresBackend, MigrationRunner]:
    backend = PostgresBackend(server_url(), schema=schema, migrate=False)
    return backend, MigrationRunner(backend, folder=folder)


# -- migrations ---------------------------------------------------------------------------


def test_fresh_schema_is_created_and_migrated(schema: str) -> None:
    with PostgresBackend(server_url(), schema=schema, migrate=False) as backend:
        assert not schema_exists(schema)
        assert backend.schema_version() == 0
        names = [s.name for s in SCRIPTS]
        assert [s.name for s in backend.migration_runner().migrate(dry_run=True)] == names
        assert not schema_exists(schema)  # a dry run changes nothing
        assert [s.name for s in backend.migration_runner().migrate()] == names
        assert backend.schema_version() == VERSION
        assert backend.migration_runner().migrate() == []
    rows = admin_execute(f'SELECT version, name, checksum FROM "{schema}".schema_migrations')
    assert [(v, n) for v, n, _ in rows] == [(s.version, s.name) for s in SCRIPTS]
    generated = admin_execute(
        "SELECT generation_expression FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'conversations'"
        " AND column_name = 'source_name'",
        (schema,),
    )
    assert generated == [("(provider_meta ->> 'source'::text)",)]


def test_concurrent_migrators_apply_each_script_once(schema: str, tmp_path: Path) -> None:
    folder = migrations_folder(
        tmp_path,
        # Not re-runnable: a second application would fail on the existing column.
        **{
            "0005_slow_column": "ALTER TABLE conversations ADD COLUMN note TEXT;\n"
            "SELECT pg_sleep(0.3);\n"
        },
    )
    pairs = [runner_for(schema, folder) for _ in range(4)]
    barrier = threading.Barrier(len(pairs))
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def migrate(runner: MigrationRunner) -> None:
        try:
            barrier.wait(10)
            applied.append([s.name for s in runner.migrate()])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(runner,)) for _, runner in pairs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for backend, _ in pairs:
            backend.close()
    assert errors == []
    done = sorted(name for names in applied for name in names)
    assert done == ["0004_baseline", "0005_slow_column"]
    recorded = admin_execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1')
    assert recorded == [(4,), (5,)]


def test_no_transaction_script_runs_outside_a_transaction(schema: str, tmp_path: Path) -> None:
    script = (
        "-- polylogue: no-transaction\n"
        "-- CREATE INDEX CONCURRENTLY refuses to run inside a transaction block.\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_role ON messages (role);\n"
        "COMMENT ON INDEX idx_messages_role IS 'role filter; built concurrently';\n"
    )
    folder = migrations_folder(tmp_path, **{"0005_messages_role_index": script})
    backend, runner = runner_for(schema, folder)
    with backend:
        assert [s.name for s in runner.migrate()] == ["0004_baseline", "0005_messages_role_index"]
        assert runner.status().current_version == 5
        assert runner.migrate() == []
    [(valid, comment)] = admin_execute(
        "SELECT i.indisvalid, obj_description(i.indexrelid, 'pg_class') FROM pg_index AS i"
        " WHERE i.indexrelid = to_regclass(%s)",
        (f'"{schema}".idx_messages_role',),
    )
    assert valid is True and comment == "role filter; built concurrently"
    versions = admin_execute(f'SELECT version, name FROM "{schema}".schema_migrations ORDER BY 1')
    assert versions == [(4, "0004_baseline"), (5, "0005_messages_role_index")]


def test_failed_no_transaction_script_keeps_the_version(schema: str, tmp_path: Path) -> None:
    script = (
        "-- polylogue: no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_role ON messages (role);\n"
        "CREATE INDEX CONCURRENTLY idx_broken ON no_such_table (x);\n"
    )
    backend, runner = runner_for(schema, migrations_folder(tmp_path, **{"0005_broken": script}))
    with backend:
        # The no-transaction message: what completed before the failure is not undone.
        said = r"(?s)0005_broken.sql \(no-transaction\) failed.*still at\s+version 4.*not undone"
        with pytest.raises(MigrationError, match=said):
            runner.migrate()
        assert backend.schema_version() == 4
        # the session lock was given back: another migrator is not blocked
        key = migration_lock_key(schema)
        assert admin_execute(
            "SELECT pg_try_advisory_lock(%s), pg_advisory_unlock(%s)", (key, key)
        ) == [(True, True)]


def test_failed_script_leaves_nothing(schema: str, tmp_path: Path) -> None:
    script = (
        "CREATE TABLE extra (x INTEGER);\n"
        "INSERT INTO conversations (conversation_id, provider_name,"
        " provider_conversation_id, content_hash, version) VALUES ('c', 'p', 'pc', 'h', 1);\n"
        "SELECT 1 / 0;\n"
    )
    backend, runner = runner_for(schema, migrations_folder(tmp_path, **{"0005_fails": script}))
    with backend:
        with pytest.raises(MigrationError, match=r"0005_fails.sql failed.*division by zero"):
            runner.migrate()
        assert backend.schema_version() == 4
        assert backend.get_conversation("c") is None
    assert admin_execute("SELECT to_regclass(%s)", (f'"{schema}".extra',)) == [(None,)]


def test_failed_baseline_leaves_not_even_the_schema(schema: str, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "0004_baseline.sql").write_text(
        BASELINE.read_text() + "\nCREATE TABLE conversations (x INTEGER);\n"
    )
    backend, runner = runner_for(schema, folder)
    with backend, pytest.raises(MigrationError, match="still at version 0"):
        runner.migrate()
    assert not schema_exists(schema)


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("SELECT 1;", True),
        ("SELECT 'a;", False),
        ("SELECT 'it''s;", False),
        ("SELECT E'\\';", False),
        ("SELECT E'\\'';", True),
        ("-- note;", False),
        ("/* a /* nested; */", False),
        ("/* a /* nested */ */ SELECT 1;", True),
        ('SELECT 1 AS "a;', False),
        ("DO $$ BEGIN PERFORM 1;", False),
        ("DO $body$ BEGIN PERFORM 1; END $body$;", True),
        ("SELECT $1;", True),
    ],
)
def test_statement_complete(text: str, complete: bool) -> None:
    assert statement_complete(text) is complete


def test_scripts_split_into_statements_whole() -> None:
    script = (
        "-- polylogue: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
        "COMMENT ON INDEX i IS 'a; b';\nDO $$ BEGIN PERFORM 1; END $$;\n-- trailing;\n"
    )
    statements = list(iter_statements(script, statement_complete))
    assert len(statements) == 3
    assert statements[1].strip() == "COMMENT ON INDEX i IS 'a; b';"


# -- U+0000 -------------------------------------------------------------------------------


@given(st.text())
def test_escape_round_trips_and_stores_no_nul(text: str) -> None:
    stored = escape(text)
    assert "\x00" not in stored
    assert unescape(stored) == text
    if "\x00" not in text and not text.startswith(MARKER):
        assert stored is text


def test_escape_scheme_is_the_documented_one() -> None:
    assert escape("nul\x00byte") == "␀nul\\0byte"
    assert escape("back\\slash\x00") == "␀back\\\\slash\\0"
    assert escape("␀starts with the marker") == "␀␀starts with the marker"
    assert escape("plain ␀ inside") == "plain ␀ inside"
    assert store_json_text('{"k\\u0000":"␀"}') == '{"␀k\\\\0":"␀␀"}'


def test_nul_is_stored_escaped_and_read_back_as_saved(schema: str) -> None:
    meta = {"source": "export", "k\x00": ["v\x00", "␀v", {"deep\x00": "\x00"}], "n": 1}
    with PostgresBackend(server_url(), schema=schema) as backend:
        backend.save_conversation(conversation("c\x00id", title="t\x00", provider_meta=meta))
        records = [
            message("m\x00", "c\x00id", text="nul\x00byte", role="␀role", timestamp="\x00"),
            message("m-plain", "c\x00id", text="plain ␀ text", provider_meta=meta),
        ]
        assert backend.save_messages(records) == 2
        assert backend.save_messages(records) == 0  # escaped forms compare equal
        raw = admin_execute(
            f'SELECT message_id, text, role, "timestamp", provider_meta::text'
            f' FROM "{schema}".messages ORDER BY message_id'
        )
        # What psql shows: the escaped text, and jsonb without any \u0000.
        assert raw == [
            (
                "m-plain",
                "plain ␀ text",
                None,
                None,
                # (jsonb orders keys by length, then bytes)
                '{"n": 1, "source": "export", "␀k\\\\0": ["␀v\\\\0", "␀␀v",'
                ' {"␀deep\\\\0": "␀\\\\0"}]}',
            ),
            ("␀m\\0", "␀nul\\0byte", "␀␀role", "␀\\0", None),
        ]
        got = backend.get_conversation("c\x00id")
        assert got is not None and got.title == "t\x00" and got.provider_meta == meta
        assert {m.message_id: m for m in backend.get_messages("c\x00id")} == {
            m.message_id: m for m in records
        }
        assert [c.conversation_id for c in backend.list_conversations(source="export")] == [
            "c\x00id"
        ]
        assert backend.delete_conversation("c\x00id") is True


def test_large_floats_in_json_come_back_as_floats(schema: str) -> None:
    values = [1e16, -1e23, 1.5e300, 1e-7, 0.1, 2.5, 2**64, "1e+23", {"k": 1e22}]
    assert store_json_text('{"a":"1e+5","b":1e+16}') == '{"a":"1e+5","b":10000000000000000.0}'
    with PostgresBackend(server_url(), schema=schema) as backend:
        backend.save_conversation(conversation("c", provider_meta={"v": values}))
        got = backend.get_conversation("c")
        assert got is not None and got.provider_meta == {"v": values}
        assert [type(v) for v in got.provider_meta["v"]] == [type(v) for v in values]
        assert backend.save_conversation(conversation("c", provider_meta={"v": values})) == 0


def test_every_query_kind_stores_and_reads_through_the_adapter(schema: str) -> None:
    """U+0000 in ids, text and JSON keys through ``!``, ``^``, ``$``, row queries and the
    pipelined chunks of a bulk write: each path stores the escaped form and reads the
    original back (without the adapter, psycopg refuses NUL or the escape shows)."""
    meta = {"k\x00": ["\x00", "␀"]}
    count = PIPELINE_CHUNK + 5  # over one chunk: the pipelined path
    with PostgresBackend(server_url(), schema=schema) as backend:
        assert isinstance(backend.queries.driver_adapter, FaithfulPsycopgAdapter)
        # single `!`
        backend.save_conversation(conversation("c\x00", title="t\x00", provider_meta=meta))
        backend.save_conversation(conversation("other\x00"))
        # pipelined upsert_messages, its touched rows compared in stored form
        records = [
            message(f"m\x00{i:05d}", "c\x00", text=f"x\x00{i}", provider_meta=meta)
            for i in range(count)
        ]
        assert backend.save_messages(records) == count
        assert backend.save_messages(records) == 0
        claimed = [message(f"n{i:05d}", "other\x00") for i in range(count)]
        claimed.append(message("m\x0000003", "other\x00"))
        with pytest.raises(MessageOwnershipError) as caught:
            backend.save_messages(claimed)
        assert caught.value.collisions == (("m\x0000003", "c\x00", "other\x00"),)
        # pipelined `!` bulk writes (attachments, refs, ref counts)
        files = [
            attachment(f"a\x00{i:05d}", "c\x00", f"m\x00{i:05d}", provider_meta=meta)
            for i in range(count)
        ]
        assert backend.save_attachments(files) == count
        got = backend.get_attachments("c\x00")
        assert {(a.attachment_id, a.message_id) for a in got} == {
            (a.attachment_id, a.message_id) for a in files
        }
        assert all(a.provider_meta == meta for a in got)
        assert admin_execute(
            f'SELECT count(*) FROM "{schema}".attachments'
            f" WHERE starts_with(attachment_id, %s) AND ref_count = 1",
            (MARKER,),
        ) == [(count,)]
        # row query, `^` and `$` as the query set runs them on a pooled connection
        with backend.pool.connection() as conn:
            rows = list(backend.queries.get_messages(conn, conversation_id="c\x00"))
            assert [row["message_id"] for row in rows] == [r.message_id for r in records]
            assert rows[0]["text"] == "x\x000" and rows[0]["provider_meta"] == meta
            one = backend.queries.get_conversation(conn, conversation_id="c\x00")
            assert (one["conversation_id"], one["title"]) == ("c\x00", "t\x00")
            assert one["provider_meta"] == meta
            assert backend.queries.lock_conversation(conn, conversation_id="c\x00") == "c\x00"
        stored = admin_execute(f'SELECT conversation_id, title FROM "{schema}".conversations')
        assert ("␀c\\0", "␀t\\0") in stored and len(stored) == 2


# -- set-based batches --------------------------------------------------------------------


def test_large_batches_go_through_the_pipeline_in_order(schema: str) -> None:
    count = PIPELINE_CHUNK * 2 + 7
    with PostgresBackend(server_url(), schema=schema) as backend:
        backend.save_conversation(conversation("c1"))
        records = [message(f"m{i:05d}", timestamp=f"t{i:05d}") for i in range(count)]
        # the same id in the first and the last chunk: its last values win, counted once
        records.append(records[0].model_copy(update={"text": "last one wins"}))
        assert backend.save_messages(records) == count
        got = backend.get_messages("c1")
        assert len(got) == count and got[0].text == "last one wins"
        assert backend.save_messages(records[1:]) == 0
        broken = [message(f"n{i:05d}") for i in range(count)]
        broken[-1] = message("orphan", "no-such-conversation")  # fails in the last chunk
        with pytest.raises(IntegrityError, match="save_messages"):
            backend.save_messages(broken)
        assert len(backend.get_messages("c1")) == count  # nothing of the failed call
        with pytest.raises(IntegrityError), backend.transaction():
            backend.save_messages(broken)
        assert not backend.in_transaction and len(backend.get_messages("c1")) == count


def test_one_batch_naming_an_attachment_often_merges_like_row_by_row(schema: str) -> None:
    with PostgresBackend(server_url(), schema=schema) as backend:
        backend.save_conversation(conversation("c1"))
        backend.save_messages([message("m1"), message("m2")])
        backend.save_attachments([attachment("a", "c1", mime_type="image/png", path="/old")])
        batch = [
            attachment("a", "c1", "m1", size_bytes=1, path="/first"),
            attachment("a", "c1", "m2", size_bytes=2, provider_meta={"k": 1}),
            attachment("a", "c1", None),  # NULLs erase nothing
        ]
        assert backend.save_attachments(batch) == 2  # two new refs
        got = {a.message_id: a for a in backend.get_attachments("c1")}
        assert set(got) == {None, "m1", "m2"}
        assert (got[None].mime_type, got[None].size_bytes, got[None].path) == (
            "image/png",
            2,
            "/first",
        )
        assert got[None].provider_meta == {"k": 1}


def test_batches_of_conversations_and_prunes_are_set_based(schema: str) -> None:
    with PostgresBackend(server_url(), schema=schema) as backend:
        first, again = conversation("c1", title="first"), conversation("c1", title="last")
        assert backend.save_conversations([first, conversation("c2"), again]) == 2
        got = backend.get_conversation("c1")
        assert got is not None and got.title == "last"
        assert backend.save_conversations([again, conversation("c2")]) == 0
        keep, drop = attachment("keep", "c1"), attachment("drop", "c1")
        backend.save_attachments([keep, drop, attachment("drop", "c2")])
        assert backend.prune_attachments_many({"c1": [keep.ref_id], "c2": []}) == 2
        assert [a.attachment_id for a in backend.get_attachments("c1")] == ["keep"]
        assert backend.get_attachments("c2") == []
        assert admin_execute(f'SELECT attachment_id FROM "{schema}".attachments') == [("keep",)]
        with pytest.raises(TypeError):
            backend.prune_attachments_many({"c1": "ref-abc"})


def test_an_unchanged_bundle_rewrites_and_locks_no_message_or_count(schema: str) -> None:
    """Re-saving a bundle as it is stored writes no new row version of its messages or
    attachments, and locks no message (a lock is a WAL record too): the pipelined bundle
    recounts every attachment it saves, and ``refresh_ref_counts`` leaves right counts be."""
    with PostgresBackend(server_url(), schema=schema) as backend:
        repo = StorageRepository(backend)
        conv, messages, atts = bundle("c1", 5, ("a1", "a2"))
        repo.save_conversation(conversation=conv, messages=messages, attachments=atts)

        def versions(table: str) -> list[tuple[Any, ...]]:
            sql = f'SELECT xmin::text, xmax::text FROM "{schema}".{table} ORDER BY 1'
            return admin_execute(sql)

        before = {table: versions(table) for table in ("messages", "attachments")}
        counts = repo.save_conversation(conversation=conv, messages=messages, attachments=atts)
        assert (counts["messages"], counts["attachments"]) == (0, 0)
        assert counts["skipped_messages"] == 5 and counts["skipped_attachments"] == 2
        assert versions("messages") == before["messages"]  # xmax: no new lock either
        # attachments are locked on purpose (ref counting), never rewritten
        assert [v[0] for v in versions("attachments")] == [v[0] for v in before["attachments"]]
        edited = [*messages[:4], messages[4].model_copy(update={"text": "edited"})]
        counts = repo.save_conversation(conversation=conv, messages=edited, attachments=atts)
        assert counts["messages"] == 1 and backend.get_messages("c1")[4].text == "edited"


def test_a_transaction_holds_its_writes_and_hands_the_connection_back_in_autocommit(
    schema: str,
) -> None:
    """``BEGIN`` goes out with a transaction's first statement (psycopg leaves autocommit
    for it): the writes are still invisible to others until the commit, and a committed
    or rolled-back transaction gives the pool its connection back idle, in autocommit."""
    with PostgresBackend(server_url(), schema=schema, pool_max_size=1) as backend:
        repo = StorageRepository(backend)
        conv, messages, atts = bundle("c1", 3, ("a1",))

        def stored() -> int:
            sql = f'SELECT count(*) FROM "{schema}".messages'
            return int(admin_execute(sql)[0][0])

        def handed_back() -> tuple[bool, str]:
            with backend.pool.connection() as conn:
                return conn.autocommit, conn.info.transaction_status.name

        with backend.transaction():
            repo.save_conversation(conversation=conv, messages=messages, attachments=atts)
            assert stored() == 0
        assert stored() == 3 and handed_back() == (True, "IDLE")
        with pytest.raises(ZeroDivisionError), backend.transaction():
            repo.save_conversation(conversation=conversation("c2"), messages=[], attachments=[])
            _ = 1 / 0
        assert backend.get_conversation("c2") is None and handed_back() == (True, "IDLE")
        with backend.transaction():
            pass  # no statement: nothing to begin or commit
        assert handed_back() == (True, "IDLE")


# -- passwords ----------------------------------------------------------------------------


@pytest.fixture
def password_role() -> Iterator[tuple[str, str]]:
    """A role that must log in with its password (see ``role_with_password``)."""
    with role_with_password(f"S3cr3t:{uuid.uuid4().hex[:6]}@/%") as made:
        yield made


def _with_login(role: str, password: str) -> str:
    with psycopg.connect(server_url()) as conn:
        where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    quoted = "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in password)
    return f"postgresql://{role}:{quoted}@{where}"


def _everything_said(exc: BaseException | None) -> str:
    """The messages of an exception and of every exception chained to it."""
    said = []
    while exc is not None:
        said.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(said)


def test_passwords_never_appear_in_errors_or_output(
    password_role: tuple[str, str], schema: str
) -> None:
    role, password = password_role
    good = _with_login(role, password)
    wrong_password = password[::-1] + "x"
    bad = _with_login(role, wrong_password)
    with pytest.raises(OperationalError) as info:
        PostgresBackend(bad, schema=schema)
    said = _everything_said(info.value)
    assert "password authentication failed" in said
    for secret in (wrong_password, bad.split(":")[2].split("@")[0]):
        assert secret not in said
    with PostgresBackend(good, schema=schema) as backend:
        described = backend.describe()
        assert password not in described and f"{role}:***@" in described
        with pytest.raises(DatabaseError) as failed:
            backend.save_messages([message("m", "no-such-conversation")])
        assert password not in _everything_said(failed.value)
        assert "***" in str(failed.value)
    url = url_with(schema, good)
    for command in (["status", "--url", url], ["migrate", "--url", url]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
        assert password not in result.output and "***" in result.output
    result = CliRunner().invoke(main, ["status", "--url", url_with(schema, bad)])
    assert result.exit_code == 1
    assert wrong_password not in result.output and "authentication failed" in result.output


def test_malformed_dsn_errors_do_not_quote_the_password() -> None:
    require_server()
    with pytest.raises(DatabaseError) as info:
        PostgresBackend("host=127.0.0.1 password=hunter2secret dbname")
    assert "hunter2secret" not in _everything_said(info.value)
    assert "password=***" in str(info.value)


def test_unreachable_server_fails_at_once_with_the_reason() -> None:
    with pytest.raises(OperationalError, match=r"127\.0\.0\.1.*port 1 failed") as info:
        PostgresBackend("postgresql://me:pw-xyz@127.0.0.1:1/db")
    assert "pw-xyz" not in _everything_said(info.value)
    assert "postgresql://me:***@127.0.0.1:1/db" in str(info.value)


# -- configuration ------------------------------------------------------------------------


def test_pool_and_schema_options_come_from_the_url(schema: str) -> None:
    backend = create_backend(url_with(schema, pool_min_size=2, pool_max_size=3))
    try:
        assert isinstance(backend, PostgresBackend)
        assert (backend.pool.min_size, backend.pool.max_size) == (2, 3)
        assert backend.schema == schema and f"(schema {schema})" in backend.describe()
        assert backend.schema_version() == VERSION
        backend.save_conversation(conversation("c1"))
    finally:
        backend.close()
    with pytest.raises(DatabaseError, match="is closed"):
        backend.get_conversation("c1")
    assert admin_execute(f'SELECT conversation_id FROM "{schema}".conversations') == [("c1",)]
    config = BackendConfig(
        backend_type="postgresql", url=server_url(), schema_name=schema, pool_max_size=2
    )
    with create_backend(config) as same:
        assert isinstance(same, PostgresBackend) and same.pool.max_size == 2
        assert same.get_conversation("c1") is not None
    with pytest.raises(ConfigurationError, match="pool_min_size"):
        create_backend(url_with(schema, pool_min_size=5, pool_max_size=2))


def test_schemas_keep_archives_apart(schema: str) -> None:
    with fresh_schema() as other:
        mixed = f"Mixed_{other}"
        try:
            with (
                PostgresBackend(server_url(), schema=schema) as first,
                PostgresBackend(server_url(), schema=mixed) as second,
            ):
                first.save_conversation(conversation("only-in-first"))
                assert second.get_conversation("only-in-first") is None
                assert second.list_conversations() == []
            assert schema_exists(mixed)
        finally:
            admin_execute(f'DROP SCHEMA IF EXISTS "{mixed}" CASCADE')


# -- server restart -----------------------------------------------------------------------


def _restart_command() -> list[str]:
    tool = shutil.which("pg_ctlcluster")
    if tool is None:
        pytest.skip("pg_ctlcluster not found: cannot restart the server from the test")
    [(data_directory,)] = admin_execute("SHOW data_directory")
    parts = Path(data_directory).parts  # /var/lib/postgresql/<version>/<cluster>
    if len(parts) < 2 or not parts[-2].replace(".", "").isdigit():
        pytest.skip(f"the server at {server_url()} is not a Debian cluster ({data_directory})")
    return [tool, "--skip-systemctl-redirect", parts[-2], parts[-1], "restart", "-m", "fast"]


def _restart(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"not permitted to restart the server: {done.stderr.strip()[:200]}")


def test_server_restart_fails_the_call_in_flight_then_recovers(schema: str) -> None:
    command = _restart_command()
    with PostgresBackend(server_url(), schema=schema, pool_min_size=2) as backend:
        backend.save_conversation(conversation("before"))
        backend.begin()
        backend.save_conversation(conversation("in-flight"))
        _restart(command)
        with pytest.raises(OperationalError, match="save_conversation failed"):
            backend.save_conversation(conversation("after-restart"))
        backend.rollback()
        assert not backend.in_transaction
        # the very next call works, on a new connection
        assert backend.get_conversation("before") is not None
        assert backend.get_conversation("in-flight") is None
        backend.save_conversation(conversation("after"))
        # outside a transaction, pooled connections killed by a restart are replaced
        _restart(command)
        assert backend.get_conversation("after") is not None
        assert [c.conversation_id for c in backend.list_conversations()] == ["after", "before"]


# -- the polylogue command ----------------------------------------------------------------


def test_cli_migrate_and_status_on_a_fresh_schema(schema: str) -> None:
    url = url_with(schema)
    runner = CliRunner()
    dry = runner.invoke(main, ["migrate", "--url", url, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would apply 0004_baseline" in dry.output and not schema_exists(schema)
    before = runner.invoke(main, ["status", "--url", url])
    assert before.exit_code == 0, before.output
    assert f"schema version: 0 (code: {VERSION})" in before.output
    assert "0004_baseline" in before.output
    done = runner.invoke(main, ["migrate", "--url", url])
    assert done.exit_code == 0, done.output
    assert "applied 0004_baseline" in done.output
    assert f"now at schema version {VERSION}" in done.output
    assert f"(schema {schema})" in done.output
    status = runner.invoke(main, ["status", "--url", url])
    assert status.exit_code == 0, status.output
    assert f"schema version: {VERSION} (code: {VERSION})" in status.output
    assert status.output.count("sha256:") == len(SCRIPTS)
    assert "pending:\n  (none)" in status.output and "drift:\n  (none)" in status.output
    again = runner.invoke(main, ["migrate", "--url", url])
    assert f"up to date at schema version {VERSION}" in again.output
    with create_backend(url) as backend:
        backend.save_conversation(conversation("c1"))
        backend.save_messages([message("m1", timestamp="2024-05-01T00:00:00Z")])
    stats = runner.invoke(main, ["stats", "--url", url, "--json"])
    assert stats.exit_code == 0, stats.output
    assert '"messages": 1' in stats.output and '"month": "2024-05"' in stats.output


def test_records_with_every_field_survive_a_bundle(schema: str) -> None:
    """A smoke test of the repository path with U+0000 everywhere it may appear."""
    from polylogue.storage.repository import StorageRepository

    conv = ConversationRecord(
        conversation_id="c",
        provider_name="p",
        provider_conversation_id="\x00",
        content_hash="h\x00",
        provider_meta={"source": "s", "x": "\x00"},
    )
    msgs = [
        MessageRecord(
            message_id=f"m{i}\x00", conversation_id="c", content_hash="h", text="\x00" * i
        )
        for i in range(3)
    ]
    with PostgresBackend(server_url(), schema=schema) as backend:
        repo = StorageRepository(backend)
        counts = repo.save_conversation(conversation=conv, messages=msgs)
        assert (counts["conversations"], counts["messages"]) == (1, 3)
        again = repo.save_conversation(conversation=conv, messages=msgs)
        assert (again["skipped_conversations"], again["skipped_messages"]) == (1, 3)
        assert backend.get_conversation("c") == conv
        assert backend.get_messages("c") == msgs


def test_import_leaves_the_tables_analysed(schema: str, tmp_path: Path) -> None:
    """A freshly loaded table is planned from guesses until analysed (autovacuum may be
    off, or late): one conversation's messages were looked up with parallel workers and
    verifying 1M copied messages took over 11 minutes."""
    from polylogue.archive.format import encode_bundle, encode_header

    archive = tmp_path / "a.jsonl"
    with archive.open("wb") as out:
        out.write(encode_header())
        for i in range(3):
            conv, messages, attachments = bundle_of(f"c{i}")
            out.write(encode_bundle(conv, messages, attachments))
    result = CliRunner().invoke(main, ["import", str(archive), "--url", url_with(schema)])
    assert result.exit_code == 0, result.output
    analysed = admin_execute(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %s"
        " AND last_analyze IS NOT NULL ORDER BY relname",
        (schema,),
    )
    assert [name for (name,) in analysed] == [
        "attachment_refs",
        "attachments",
        "conversations",
        "messages",
        "runs",
    ]


def bundle_of(cid: str) -> tuple[ConversationRecord, list[MessageRecord], list[Any]]:
    return conversation(cid), [message(f"{cid}-m{j}", cid) for j in range(3)], []
