"""The function API kept for existing callers: polylogue.storage.db and .store."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

import polylogue.storage as storage
from polylogue.storage import db, store
from polylogue.storage.backends import SQLiteBackend
from polylogue.storage.borrowed import BorrowedSQLiteBackend
from polylogue.storage.migration_scripts import discover
from polylogue.storage.repository import StorageRepository
from tests.records import attachment, bundle, conversation, message


def test_exports() -> None:
    assert discover("sqlite")[-1].version == db.SCHEMA_VERSION
    assert issubclass(db.DatabaseError, Exception)
    assert store.MAX_ATTACHMENT_SIZE == 2**40
    for name in ("ConversationRecord", "MessageRecord", "AttachmentRecord", "RunRecord"):
        assert getattr(store, name) is getattr(storage, name)
    assert storage.create_backend and storage.SQLiteBackend and storage.store_records
    assert storage.StorageRepository is StorageRepository


def test_open_connection_sets_up_a_migrated_private_database(data_home: Path) -> None:
    with db.open_connection() as conn:
        assert isinstance(conn, sqlite3.Connection)
        row = conn.execute("PRAGMA user_version").fetchone()
        assert isinstance(row, sqlite3.Row) and row[0] == db.SCHEMA_VERSION
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    path = db.default_db_path()
    assert path.is_relative_to(data_home) and path.parent.is_dir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_nested_calls_share_one_connection_and_commit_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "a.db"
    with db.open_connection(path) as outer:
        with db.open_connection() as inner, db.open_connection(path) as same:
            assert inner is outer and same is outer
            store.upsert_conversation(inner, conversation("c1"))
        # not committed yet: another connection does not see it
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
        other.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
    check.close()


def test_exception_rolls_back_and_closes(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with pytest.raises(RuntimeError), db.open_connection(path) as conn:
        store.upsert_conversation(conn, conversation("c1"))
        raise RuntimeError
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    with db.open_connection(path) as conn2:
        assert conn2.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0


def test_other_path_inside_an_open_connection_is_refused(tmp_path: Path) -> None:
    with (
        db.open_connection(tmp_path / "a.db"),
        pytest.raises(db.DatabaseError, match="Existing connection opened for"),
        db.open_connection(tmp_path / "b.db"),
    ):
        pass


def test_connections_are_per_thread(tmp_path: Path) -> None:
    seen: list[sqlite3.Connection] = []
    with db.open_connection(tmp_path / "a.db") as mine:
        thread = threading.Thread(target=lambda: seen.append(_open_in_thread(tmp_path / "b.db")))
        thread.start()
        thread.join(10)
        assert seen and seen[0] is not mine


def _open_in_thread(path: Path) -> sqlite3.Connection:
    with db.open_connection(path) as conn:
        return conn


def test_connection_context_uses_the_given_connection_without_committing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with db.open_connection(path):
        pass
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    with db.connection_context(conn) as same:
        assert same is conn
        counts = store.store_records(
            conversation=conversation("c1"), messages=[message("m1")], attachments=[], conn=same
        )
    assert counts["conversations"] == 1
    assert conn.in_transaction  # the caller still owns the transaction
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
    conn.close()


def test_a_borrowed_backend_leaves_the_connection_and_its_transaction_to_the_caller(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    with db.open_connection(path):
        pass
    conn = sqlite3.connect(path)
    backend = BorrowedSQLiteBackend(conn)
    assert backend.describe() == "sqlite (borrowed connection)" and backend.db_path is None
    backend.save_conversation(conversation("c1"))
    with pytest.raises(ValueError), backend.transaction():
        backend.save_conversation(conversation("c2"))
        raise ValueError("undo only this")
    backend.close()
    assert conn.in_transaction  # c1 is the caller's to commit, c2 was undone
    assert [r[0] for r in conn.execute("SELECT conversation_id FROM conversations")] == ["c1"]
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
    conn.close()


def test_upsert_functions_report_changes(tmp_path: Path) -> None:
    with db.open_connection(tmp_path / "a.db") as conn:
        assert store.upsert_conversation(conn, conversation("c1")) is True
        assert store.upsert_conversation(conn, conversation("c1")) is False
        assert store.upsert_conversation(conn, conversation("c1", title="new")) is True
        assert store.upsert_message(conn, message("m1")) is True
        assert store.upsert_message(conn, message("m1")) is False
        assert store.upsert_attachment(conn, attachment("a", "c1", "m1")) is True
        assert store.upsert_attachment(conn, attachment("a", "c1", "m1")) is False
        assert store.upsert_attachment(conn, attachment("a", "c1", "m1", path="/p")) is True
        store.record_run(conn, store.RunRecord(run_id="r", timestamp="t"))
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_store_records_counts_equal_the_repository(tmp_path: Path, data_home: Path) -> None:
    backend = SQLiteBackend(tmp_path / "repo.db")
    repo = StorageRepository(backend)
    for b in [
        bundle("c1", 3, ("a", "b")),
        bundle("c1", 3, ("a", "b")),
        bundle("c1", 3, ("a",)),
        bundle("c2", 2, ("a",)),
    ]:
        expected = repo.save_conversation(conversation=b[0], messages=b[1], attachments=b[2])
        assert store.store_records(conversation=b[0], messages=b[1], attachments=b[2]) == expected
    with db.open_connection() as conn:
        refs = conn.execute("SELECT count(*) FROM attachment_refs").fetchone()[0]
    assert refs == 2
    backend.close()


def test_store_records_failure_leaves_caller_transaction_usable(tmp_path: Path) -> None:
    with db.open_connection(tmp_path / "a.db") as conn:
        store.upsert_conversation(conn, conversation("kept"))
        conv, messages, _ = bundle("bad", 2)
        with pytest.raises(db.DatabaseError):
            store.store_records(
                conversation=conv,
                messages=messages,
                attachments=[attachment("x", "bad", "ghost")],
                conn=conn,
            )
        names = [r[0] for r in conn.execute("SELECT conversation_id FROM conversations")]
    assert names == ["kept"]
