"""What is particular to DuckDB: transactions without savepoints, one writing process per
file, read-only analysis, the set-based write path for large batches, and the migration
target. The shared behaviour is in test_conformance.py and test_repository.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from aiosql.types import SQLOperationType
from click.testing import CliRunner

from polylogue.cli import main
from polylogue.errors import (
    ConfigurationError,
    DatabaseError,
    IntegrityError,
    MigrationError,
    OperationalError,
    TransactionError,
)
from polylogue.storage.backends import BackendConfig, SQLBackend, SQLiteBackend, create_backend
from polylogue.storage.backends.duckdb.backend import SPLIT_UPSERT_ROWS, DuckDBBackend
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.migration_scripts import discover
from polylogue.storage.records import MessageRecord
from polylogue.storage.repository import StorageRepository
from polylogue.storage.sqlfiles import resource_dir
from tests.conftest import raw_scalar
from tests.records import attachment, bundle, conversation, message

SCRIPTS = discover("duckdb")
VERSION = SCRIPTS[-1].version
"""The schema version this code migrates DuckDB databases to."""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckDBBackend]:
    backend = DuckDBBackend(tmp_path / "archive.duckdb")
    try:
        yield backend
    finally:
        backend.close()


def count(backend: SQLBackend, table: str) -> int:
    return int(raw_scalar(backend, f"SELECT count(*) FROM {table}"))


# -- the adapter runs on the transaction's own cursor ------------------------------------


def test_a_rolled_back_write_is_gone(db: DuckDBBackend, tmp_path: Path) -> None:
    seen_elsewhere: list[int] = []
    db.begin()
    db.save_conversation(conversation("c1"))
    db.save_messages([message("m1")])
    assert count(db, "messages") == 1  # the transaction sees its own write
    worker = threading.Thread(target=lambda: seen_elsewhere.append(count(db, "messages")))
    worker.start()
    worker.join(10)
    assert seen_elsewhere == [0]  # another thread's cursor does not
    db.rollback()
    assert count(db, "messages") == 0
    assert db.get_conversation("c1") is None
    db.close()
    reopened = DuckDBBackend(tmp_path / "archive.duckdb")
    try:
        assert reopened.get_conversation("c1") is None
    finally:
        reopened.close()


def test_bulk_queries_are_set_based(db: DuckDBBackend) -> None:
    """Every batch write is one statement over column lists (``!``, or a columnar upsert
    returning what it touched), never executemany."""
    for name in (
        "upsert_conversations",
        "upsert_messages",
        "insert_messages",
        "update_changed_messages",
        "upsert_attachments",
        "insert_attachment_refs",
        "refresh_ref_counts",
        "delete_unreferenced_attachments",
    ):
        columnar = (
            SQLOperationType.SELECT
            if name == "upsert_messages"
            else SQLOperationType.INSERT_UPDATE_DELETE
        )
        assert getattr(db.queries, name).operation is columnar, name


# -- nested transactions: no savepoints ----------------------------------------------------


def test_nested_levels_commit_together(db: DuckDBBackend) -> None:
    with db.transaction():
        db.save_conversation(conversation("outer"))
        with db.transaction():
            db.save_conversation(conversation("inner"))
        assert db.in_transaction
    assert db.get_conversation("outer") is not None
    assert db.get_conversation("inner") is not None


def test_inner_rollback_undoes_everything_and_the_outer_commit_raises(db: DuckDBBackend) -> None:
    db.save_conversation(conversation("before"))
    db.begin()
    db.save_conversation(conversation("outer"))
    db.begin()
    db.save_conversation(conversation("inner"))
    db.rollback()
    assert db.in_transaction
    # rolled back at once: neither level's work is visible any more
    assert db.get_conversation("inner") is None
    assert db.get_conversation("outer") is None
    db.save_conversation(conversation("after"))  # runs, but can never be committed
    with pytest.raises(TransactionError, match="inner transaction level was rolled back"):
        db.commit()
    assert not db.in_transaction
    assert [c.conversation_id for c in db.list_conversations()] == ["before"]


def test_a_failed_inner_block_fails_the_outer_transaction(db: DuckDBBackend) -> None:
    with pytest.raises(TransactionError, match="inner transaction level"), db.transaction():
        db.save_conversation(conversation("outer"))
        try:
            with db.transaction():
                db.save_conversation(conversation("inner"))
                raise ValueError("caller gives up on the inner block")
        except ValueError:
            pass
    assert db.get_conversation("outer") is None
    assert not db.in_transaction


def test_a_failed_statement_fails_the_whole_transaction(db: DuckDBBackend) -> None:
    db.begin()
    db.save_conversation(conversation("c1"))
    db.begin()
    with pytest.raises(IntegrityError, match="foreign key violation"):
        db.save_messages([message("m1", "ghost")])
    with pytest.raises(DatabaseError, match="aborted"):
        db.save_conversation(conversation("c2"))  # DuckDB refuses until rollback
    db.commit()  # the inner level only counts: the failure belongs to the transaction
    with pytest.raises(TransactionError, match="save_messages failed"):
        db.commit()
    assert not db.in_transaction
    assert db.list_conversations() == []


def test_a_failed_read_fails_the_transaction_too(db: DuckDBBackend) -> None:
    """DuckDB would take COMMIT after an error as a silent rollback: commit() says so."""
    db.begin()
    db.save_conversation(conversation("c1"))
    with pytest.raises(DatabaseError):
        raw_scalar(db, "SELECT count(*) FROM no_such_table")
    with pytest.raises(TransactionError, match="test query failed"):
        db.commit()
    assert db.get_conversation("c1") is None


# -- one writer ----------------------------------------------------------------------------


def test_writers_wait_for_the_write_lock_and_readers_do_not(tmp_path: Path) -> None:
    backend = DuckDBBackend(tmp_path / "a.duckdb", busy_timeout=0.3)
    outcome: dict[str, object] = {}
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with backend.transaction():
            backend.save_conversation(conversation("held"))
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        holding.wait(10)
        assert backend.get_conversation("held") is None  # a read does not wait
        started = time.monotonic()
        try:
            backend.save_conversation(conversation("late"))
        except OperationalError as exc:
            outcome["error"] = exc
        outcome["waited"] = time.monotonic() - started
    finally:
        done.set()
        thread.join(10)
    assert "write lock" in str(outcome["error"]) and "busy_timeout" in str(outcome["error"])
    assert 0.25 <= float(str(outcome["waited"])) < 5
    backend.save_conversation(conversation("late"))
    assert {c.conversation_id for c in backend.list_conversations()} == {"held", "late"}
    backend.close()


_OPEN_FROM_ANOTHER_PROCESS = """
import sys
from polylogue.errors import DatabaseInUseError
from polylogue.storage.backends.duckdb.backend import DuckDBBackend
for read_only in (False, True):
    try:
        DuckDBBackend(sys.argv[1], read_only=read_only).close()
        print("opened")
    except DatabaseInUseError as exc:
        print("IN USE:", exc)
"""


@pytest.mark.slow
def test_a_second_process_is_told_the_file_is_in_use(db: DuckDBBackend) -> None:
    db.save_conversation(conversation("c1"))
    assert db.db_path is not None
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_FROM_ANOTHER_PROCESS, str(db.db_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    for line in lines:
        assert line.startswith("IN USE:"), line
        assert str(db.db_path) in line
        assert "in use by another process" in line and "PID" in line


# -- read-only, URLs, shared handles ------------------------------------------------------


def test_read_only_opens_an_archive_for_analysis(tmp_path: Path) -> None:
    path = tmp_path / "a.duckdb"
    with DuckDBBackend(path) as writer:
        writer.save_conversation(conversation("c1"))
        writer.save_messages([message("m1", timestamp="2024-03-01T00:00:00Z")])
    reader = create_backend(f"duckdb://{path}?read_only=true")
    try:
        assert reader.describe() == f"duckdb://{path} (read-only)"
        assert [m.message_id for m in reader.get_messages("c1")] == ["m1"]
        assert reader.stats()["messages_per_month"] == [
            {"provider_name": "chatgpt", "month": "2024-03", "messages": 1}
        ]
        with reader.transaction():
            assert reader.get_conversation("c1") is not None
        with pytest.raises(DatabaseError, match="read-only"):
            reader.save_conversation(conversation("c2"))
    finally:
        reader.close()


def test_read_only_refuses_what_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(OperationalError, match="does not exist"):
        DuckDBBackend(tmp_path / "missing.duckdb", read_only=True)
    with pytest.raises(DatabaseError, match="needs a file"):
        DuckDBBackend(":memory:", read_only=True)
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(MigrationError, match=f"schema version 0, this code needs {VERSION}"):
        DuckDBBackend(empty, read_only=True)
    with DuckDBBackend(empty, read_only=True, migrate=False) as unchecked:
        assert unchecked.schema_version() == 0


def test_urls_configs_and_options(tmp_path: Path) -> None:
    path = tmp_path / "a.duckdb"
    backend = create_backend(f"duckdb://{path}?memory_limit=256MB")
    try:
        assert isinstance(backend, DuckDBBackend)
        assert backend.describe() == f"duckdb://{path}"
        assert backend.schema_version() == VERSION
        assert raw_scalar(backend, "SELECT current_setting('memory_limit')") == "244.1 MiB"
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        backend.close()
    config = BackendConfig(backend_type="duckdb", db_path=path)
    with create_backend(config) as again, create_backend("duckdb://:memory:") as memory:
        assert again.schema_version() == VERSION
        assert memory.describe() == "duckdb://:memory:"
        memory.save_conversation(conversation("only-in-memory"))
        with create_backend("duckdb://:memory:") as other_memory:
            assert other_memory.get_conversation("only-in-memory") is None
    with pytest.raises(ConfigurationError, match=r"memory_limit|Memory"):
        create_backend(f"duckdb://{tmp_path / 'b.duckdb'}?memory_limit=lots")


def test_backends_on_one_file_share_its_handle(tmp_path: Path) -> None:
    path = tmp_path / "a.duckdb"
    first, second = DuckDBBackend(path), DuckDBBackend(path)
    try:
        assert first._db is second._db
        first.save_conversation(conversation("c1"))
        first.close()
        assert second.get_conversation("c1") is not None
        with pytest.raises(ConfigurationError, match="already open in this process"):
            DuckDBBackend(path, memory_limit="1GB")
    finally:
        first.close()
        second.close()
    with DuckDBBackend(path, read_only=True) as reader:  # the file was closed: allowed now
        assert reader.get_conversation("c1") is not None


def test_memory_database_is_shared_by_threads() -> None:
    with DuckDBBackend(":memory:") as backend:
        backend.save_conversation(conversation("c1"))
        seen: list[bool] = []
        worker = threading.Thread(
            target=lambda: seen.append(backend.get_conversation("c1") is not None)
        )
        worker.start()
        worker.join(10)
        assert seen == [True]


# -- the set-based path for large batches ----------------------------------------------------


def _messages(
    n: int, conversations: int, *, offset: int = 0, text: str = "t"
) -> list[MessageRecord]:
    return [
        message(
            f"m{i:05d}",
            f"c{i % conversations}",
            text=f"{text} {i} ünï\x00😀",
            timestamp=None if i % 7 == 0 else f"2024-01-{1 + i % 28:02d}",
            provider_meta={"n": i} if i % 3 == 0 else None,
        )
        for i in range(offset, offset + n)
    ]


def test_large_batches_store_what_small_ones_do(db: DuckDBBackend, tmp_path: Path) -> None:
    """Same counts and rows as SQLite for batches above SPLIT_UPSERT_ROWS."""
    reference = SQLiteBackend(tmp_path / "reference.db")
    try:
        n = SPLIT_UPSERT_ROWS + 200
        first = _messages(n, 40)
        changed = [
            m.model_copy(update={"text": "edited"}) if i % 10 == 0 else m
            for i, m in enumerate(first)
        ]
        more = _messages(50, 40, offset=n)
        for backend in (db, reference):
            backend.save_conversations([conversation(f"c{i}") for i in range(40)])
        for step in (first, first, changed + more):
            assert db.save_messages(step) == reference.save_messages(step)
        for i in range(40):
            assert db.get_messages(f"c{i}") == reference.get_messages(f"c{i}")
    finally:
        reference.close()


def test_repeated_ids_in_a_batch_keep_the_last(db: DuckDBBackend) -> None:
    db.save_conversations(
        [conversation("c0"), conversation("c1"), conversation("c0", title="last")]
    )
    assert db.get_conversation("c0") == conversation("c0", title="last")
    for size in (3, SPLIT_UPSERT_ROWS + 10):
        batch = [*_messages(size - 2, 2), message("m00000", "c0", text="last")]
        batch.insert(1, message("m00000", "c0", text="overwritten"))
        db.save_messages(batch)
        assert {m.message_id: m.text for m in db.get_messages("c0")}["m00000"] == "last"
    refs = [attachment("a", "c0", size_bytes=1), attachment("a", "c0", path="/p")]
    assert db.save_attachments(refs) == 1
    [got] = db.get_attachments("c0")
    assert (got.size_bytes, got.path) == (1, "/p")  # NULLs in later rows erase nothing


def test_a_large_batch_with_an_orphan_is_refused_whole(db: DuckDBBackend) -> None:
    db.save_conversations([conversation(f"c{i}") for i in range(3)])
    batch = _messages(SPLIT_UPSERT_ROWS + 5, 3)
    batch[700] = message("orphan", "nowhere")
    with pytest.raises(IntegrityError, match="message orphan refers to conversation nowhere"):
        db.save_messages(batch)
    assert count(db, "messages") == 0


def test_refs_check_what_they_point_at(db: DuckDBBackend) -> None:
    db.save_conversation(conversation("c1"))
    with pytest.raises(IntegrityError, match="refers to message no-such-message"):
        db.save_attachments([attachment("a", "c1", "no-such-message")])
    with pytest.raises(IntegrityError, match="refers to conversation nowhere"):
        db.save_attachments([attachment("a", "nowhere")])
    assert count(db, "attachments") == 0 and count(db, "attachment_refs") == 0


def test_ids_with_nul_characters_round_trip(db: DuckDBBackend) -> None:
    cid, mid, aid = "c\x00one", "m\x00one", "a\x00one"
    db.save_conversation(conversation(cid))
    db.save_messages([message(mid, cid)])
    db.save_attachments([attachment(aid, cid, mid)])
    assert [m.message_id for m in db.get_messages(cid)] == [mid]
    assert [a.attachment_id for a in db.get_attachments(cid)] == [aid]
    assert db.prune_attachments_many({cid: []}) == 1
    assert count(db, "attachments") == 0


def test_prune_many_is_prune_per_conversation(db: DuckDBBackend) -> None:
    for cid in ("c1", "c2", "c3"):
        db.save_conversation(conversation(cid))
        db.save_attachments([attachment("shared", cid), attachment(f"own-{cid}", cid)])
    keep = {
        "c1": [attachment("shared", "c1").ref_id],
        "c2": [],
        "c3": [attachment("own-c3", "c3").ref_id, attachment("own-c1", "c1").ref_id],
    }
    assert db.prune_attachments_many(keep) == 4  # own-c1; shared and own-c2; shared of c3
    assert [a.attachment_id for a in db.get_attachments("c1")] == ["shared"]
    assert db.get_attachments("c2") == []
    assert [a.attachment_id for a in db.get_attachments("c3")] == ["own-c3"]
    assert raw_scalar(db, "SELECT ref_count FROM attachments WHERE attachment_id = 'shared'") == 1
    assert count(db, "attachments") == 2
    assert db.prune_attachments_many({}) == 0
    with pytest.raises(TypeError):
        db.prune_attachments_many({"c1": "ref-abc"})


def test_save_many_matches_sqlite(db: DuckDBBackend, tmp_path: Path) -> None:
    bundles = [bundle(f"c{i:03d}", 20, ("shared", f"own{i}")) for i in range(60)]
    reference = SQLiteBackend(tmp_path / "reference.db")
    try:
        for batch_size in (50, 7):
            assert StorageRepository(db).save_many(bundles, batch_size=batch_size) == (
                StorageRepository(reference).save_many(bundles, batch_size=batch_size)
            )
        assert db.stats() == reference.stats()
        for i in range(60):
            assert db.get_attachments(f"c{i:03d}") == reference.get_attachments(f"c{i:03d}")
    finally:
        reference.close()


# -- migrations -------------------------------------------------------------------------------


def test_the_version_is_the_newest_recorded_script(db: DuckDBBackend) -> None:
    status = db.migration_runner().status()
    assert (status.current_version, status.target_version, status.pending) == (VERSION, VERSION, [])
    assert [m.name for m in status.applied] == [s.name for s in SCRIPTS]
    assert db.migration_runner().migrate() == []


def test_a_script_leaving_dangling_rows_is_rolled_back(db: DuckDBBackend, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    shutil.copy(resource_dir("migrations", "duckdb") / "0004_baseline.sql", folder)
    (folder / "0005_orphans.sql").write_text(
        "INSERT INTO messages (message_id, conversation_id, content_hash, version)\n"
        "VALUES ('m1', 'ghost', 'h', 1);\n"
    )
    runner = MigrationRunner(db, folder)
    with pytest.raises(MigrationError, match=r"pointing at nothing.*ghost"):
        runner.migrate()
    assert db.schema_version() == VERSION
    assert count(db, "messages") == 0
    (folder / "0005_orphans.sql").write_text("-- polylogue: no-transaction\nSELECT 1;\n")
    with pytest.raises(MigrationError, match="always run in a transaction"):
        MigrationRunner(db, folder).migrate()


def test_stats_command_on_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "a.duckdb"
    with DuckDBBackend(path) as backend:
        StorageRepository(backend).save_many([bundle("c1", 3, ("a",))])
    result = CliRunner().invoke(main, ["stats", "--url", f"duckdb://{path}", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)["providers"]
    assert (row["provider_name"], row["conversations"], row["messages"], row["attachments"]) == (
        "chatgpt",
        1,
        3,
        1,
    )
    assert row["first_message_at"] <= row["last_message_at"] and row["text_chars"] > 0
