"""Broken environments, on SQLite and DuckDB: what goes wrong is said in one line.

A path that is a folder, a file that is not a database, a newer schema, a full disk, a
read-only file or folder and unreadable paths (as the ``nobody`` user, since root ignores
permissions), a file whose text is not UTF-8. Each must give a one-line
:class:`~polylogue.errors.DatabaseError` (or, from the ``polylogue`` command, one line on
stderr and exit status 1, never a traceback) naming the cause and the path; nothing is
damaged (``PRAGMA integrity_check``), and what was stored before is still readable.
When cleaning up after a failure fails as well, the first error is the one raised.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from polylogue.cli import DEBUG_ENV, main
from polylogue.errors import DatabaseError, OperationalError, SchemaVersionError
from polylogue.storage.backends import SQLBackend, SQLiteBackend
from polylogue.storage.repository import StorageRepository
from tests.records import bundle, conversation
from tests.reliability._environment import (
    as_other_user,
    fill,
    give_to_nobody,
    shared_folder,
    small_disk,
    table_rows,
)

duckdb = pytest.importorskip("duckdb", reason="the duckdb extra is not installed")
from polylogue.storage.backends.duckdb.backend import DuckDBBackend  # noqa: E402

KINDS = ["sqlite", "duckdb"]
FILE_NAMES = {"sqlite": "archive.db", "duckdb": "archive.duckdb"}
EARLIER = [bundle(f"early{i}", 3, ("shared", f"e{i}")) for i in range(2)]
LATER = [bundle(f"later{i}", 40, ("shared", f"l{i}")) for i in range(3)]
BIG_TEXT = "chat text " * 400
"""Message text for the writes that fill a disk (4 kB a message)."""


def open_backend(kind: str, path: Path, **options: Any) -> SQLBackend:
    if kind == "sqlite":
        return SQLiteBackend(path, **options)
    return DuckDBBackend(path, **options)


def save(backend: SQLBackend, bundles: list[Any]) -> None:
    repo = StorageRepository(backend)
    for conv, messages, attachments in bundles:
        repo.save_conversation(conversation=conv, messages=messages, attachments=attachments)


def big(bundles: list[Any]) -> list[Any]:
    return [
        (conv, [m.model_copy(update={"text": BIG_TEXT}) for m in messages], attachments)
        for conv, messages, attachments in bundles
    ]


def seeded(kind: str, path: Path) -> Path:
    with open_backend(kind, path) as backend:
        save(backend, EARLIER)
    return path


def raw_message_count(kind: str, path: Path) -> int:
    """Messages stored, read with the bare driver (read-only)."""
    if kind == "sqlite":
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def assert_one_line(error: BaseException, *words: str) -> None:
    text = str(error)
    assert isinstance(error, DatabaseError), repr(error)
    assert "\n" not in text, text
    assert "no transaction is active" not in text and "cannot rollback" not in text
    for word in words:
        assert word in text, (word, text)


def run_cli(*args: str) -> tuple[int, str, str, str | None]:
    """exit status, stdout, stderr, and the exception a real run would print a traceback of."""
    result = CliRunner().invoke(main, list(args))
    crashed = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crashed = repr(result.exception)
    return result.exit_code, result.stdout, result.stderr, crashed


def assert_cli_says(outcome: tuple[int, str, str, str | None], *words: str) -> None:
    status, stdout, stderr, crashed = outcome
    assert crashed is None, f"a traceback: {crashed}"
    assert status == 1 and stdout == "", (status, stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in stderr, (word, stderr)


def url_of(kind: str, path: Path) -> str:
    return f"{kind}://{path}"


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- as root --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_folder_where_the_file_should_be(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / FILE_NAMES[kind]
    folder.mkdir()
    said = "is a folder, not a database file" if kind == "sqlite" else "the path is a folder"
    with pytest.raises(DatabaseError) as refused:
        open_backend(kind, folder)
    assert_one_line(refused.value, str(folder), said)
    assert_cli_says(run_cli("status", "--url", url_of(kind, folder)), str(folder), said)
    assert list(folder.iterdir()) == [] and list(tmp_path.iterdir()) == [folder]


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_that_is_not_a_database(kind: str, tmp_path: Path) -> None:
    path = tmp_path / FILE_NAMES[kind]
    path.write_bytes(b"my notes, not an archive\n" * 400)
    before = fingerprint(path)
    expected = "not a SQLite database" if kind == "sqlite" else "not a valid DuckDB database"
    with pytest.raises(DatabaseError) as refused:
        open_backend(kind, path)
    assert_one_line(refused.value, str(path), expected)
    for command in ("status", "stats", "migrate"):
        assert_cli_says(run_cli(command, "--url", url_of(kind, path)), str(path), expected)
    assert fingerprint(path) == before and list(tmp_path.iterdir()) == [path]


def make_newer(kind: str, path: Path) -> None:
    if kind == "sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA user_version = 9")
        return
    conn = duckdb.connect(str(path))
    try:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
            " VALUES (9, '0009_future', 'f' || repeat('0', 63), '2030-01-01T00:00:00+00:00')"
        )
    finally:
        conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_newer_schema(kind: str, tmp_path: Path) -> None:
    path = seeded(kind, tmp_path / FILE_NAMES[kind])
    make_newer(kind, path)
    with pytest.raises(SchemaVersionError) as refused:
        open_backend(kind, path)
    assert_one_line(refused.value, "schema version 9", str(path), "upgrade polylogue")
    for command in ("status", "stats", "migrate"):
        assert_cli_says(run_cli(command, "--url", url_of(kind, path)), "version 9", str(path))
    assert raw_message_count(kind, path) == 6


# Megabytes of tmpfs: room for the schema and EARLIER, then filled by a ballast file.
DISK_SIZE = {"sqlite": 2, "duckdb": 8}


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_disk(kind: str, tmp_path: Path) -> None:
    with open_backend(kind, tmp_path / FILE_NAMES[kind]) as clean:
        save(clean, EARLIER + big(LATER))
        expected = table_rows(clean)
    with small_disk(tmp_path / "disk", DISK_SIZE[kind]) as disk:
        if disk is None:
            if kind == "duckdb":
                pytest.skip("cannot mount a tmpfs here to fill a disk (SQLite falls back)")
            full_by_page_limit(tmp_path / "limited.db", expected)
            return
        path = disk / FILE_NAMES[kind]
        backend = open_backend(kind, path)
        try:
            save(backend, EARLIER)
            ballast = fill(disk)
            with pytest.raises(OperationalError) as full:
                save(backend, big(LATER))
            said = "\n".join([str(full.value), *getattr(full.value, "__notes__", [])])
            assert "no transaction is active" not in said and "cannot rollback" not in said
            cause = "database or disk is full" if kind == "sqlite" else "No space left on device"
            assert_one_line(full.value, str(path), cause, "free some space")
            # what was there is still readable, in this process and from the command
            assert [len(backend.get_messages(c.conversation_id)) for c, _m, _a in EARLIER] == [
                3,
                3,
            ]
            ballast.unlink()
            save(backend, EARLIER + big(LATER))  # the rerun ends exact
            assert table_rows(backend) == expected
        finally:
            backend.close()
        with open_backend(kind, path) as reopened:
            assert table_rows(reopened) == expected
        assert raw_message_count(kind, path) == 6 + 120


def full_by_page_limit(path: Path, expected: dict[str, Any]) -> None:
    """Without a tmpfs: SQLite's max_page_count makes the database "full" as a disk would."""
    with SQLiteBackend(path) as backend:
        save(backend, EARLIER)
        with backend._reading("test") as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(OperationalError) as full:
            save(backend, big(LATER))
        assert_one_line(full.value, str(path), "database or disk is full", "free some space")
        with backend._reading("test") as conn:
            conn.execute("PRAGMA max_page_count = 1073741823")
        save(backend, EARLIER + big(LATER))
        assert table_rows(backend) == expected
    assert raw_message_count("sqlite", path) == 6 + 120


def test_text_that_is_not_utf8_is_not_quoted(tmp_path: Path) -> None:
    path = seeded("sqlite", tmp_path / "archive.db")
    with sqlite3.connect(path) as conn:  # a damaged file: bytes that are not UTF-8
        conn.execute(
            "UPDATE messages SET text = CAST(X'707269766174652d626f6479ff' AS TEXT)"
            " WHERE message_id = 'early0-m1'"
        )
    with SQLiteBackend(path) as backend:
        with pytest.raises(DatabaseError) as undecodable:
            backend.get_messages("early0")
        assert_one_line(undecodable.value, str(path), "'text'", "not UTF-8", "integrity_check")
        said = "\n".join(str(e) for e in (undecodable.value, undecodable.value.__cause__))
        assert "private-body" in said.split("\n")[1]  # the driver's own message quoted it
        assert "private-body" not in str(undecodable.value)
        assert len(backend.get_messages("early1")) == 3


# -- as another user ------------------------------------------------------------------------


@pytest.fixture
def shared() -> Iterator[Path]:
    with shared_folder() as folder:
        yield folder


def attempt(kind: str, path: Path, **options: Any) -> Callable[[], dict[str, Any]]:
    """Open, read what was stored, write one conversation: what happened at each step."""

    def work() -> dict[str, Any]:
        outcome: dict[str, Any] = {}
        try:
            backend = open_backend(kind, path, **options)
        except DatabaseError as exc:
            return {"open": f"{type(exc).__name__}: {exc}"}
        try:
            outcome["read"] = [len(backend.get_messages(c.conversation_id)) for c, _, _ in EARLIER]
            try:
                backend.save_conversation(conversation("written-by-nobody"))
                outcome["write"] = "ok"
            except DatabaseError as exc:
                outcome["write"] = f"{type(exc).__name__}: {exc}"
        finally:
            backend.close()
        return outcome

    return work


def check_untouched(kind: str, path: Path) -> None:
    assert raw_message_count(kind, path) == 6
    with (
        open_backend(kind, path, read_only=True)
        if kind == "duckdb"
        else SQLiteBackend(path) as backend
    ):
        assert backend.get_conversation("written-by-nobody") is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_read_only_file(kind: str, shared: Path) -> None:
    folder = shared / "mine"
    folder.mkdir()
    path = seeded(kind, folder / FILE_NAMES[kind])
    give_to_nobody(folder, path)
    os.chmod(path, 0o400)
    outcome = as_other_user(attempt(kind, path))
    if kind == "sqlite":  # readable, but not writable
        assert outcome["read"] == [3, 3], outcome
        assert outcome["write"].startswith("OperationalError"), outcome
        assert "\n" not in outcome["write"]
        for word in ("readonly database", str(path), "may not read and write"):
            assert word in outcome["write"], outcome
    else:  # DuckDB opens for writing or not at all; read-only it reads
        assert outcome["open"].startswith("OperationalError"), outcome
        for word in ("Permission denied", str(path), "this user may read and write"):
            assert word in outcome["open"], outcome
        reading = as_other_user(attempt(kind, path, read_only=True))
        assert reading["read"] == [3, 3] and "read-only" in reading["write"], reading
    os.chmod(path, 0o600)
    check_untouched(kind, path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_read_only_folder(kind: str, shared: Path) -> None:
    folder = shared / "not-mine"
    folder.mkdir()
    path = seeded(kind, folder / FILE_NAMES[kind])
    give_to_nobody(path)  # the file is the user's; the folder is not writable by them
    outcome = as_other_user(attempt(kind, path))
    problem = outcome.get("open") or outcome.get("write") or ""
    assert problem.startswith("OperationalError") and "\n" not in problem, outcome
    assert str(folder) in problem, outcome
    if kind == "sqlite":  # SQLite cannot even read: its -shm file goes beside the file
        assert "may not write in the folder" in problem, outcome
    else:  # DuckDB reads, and refuses to write before the transaction begins
        assert outcome["read"] == [3, 3], outcome
        for word in ("cannot create its .wal file", "Permission denied", "write in its folder"):
            assert word in problem, outcome
        reading = as_other_user(attempt(kind, path, read_only=True))
        assert reading["read"] == [3, 3], reading
    check_untouched(kind, path)


@pytest.mark.parametrize("kind", KINDS)
def test_the_command_on_paths_this_user_cannot_use(kind: str, shared: Path) -> None:
    unreadable = seeded(kind, shared / FILE_NAMES[kind])  # root's, mode 0600
    closed = shared / "closed"
    closed.mkdir(mode=0o700)
    missing = shared / "new" / "sub" / FILE_NAMES[kind]
    cases = {
        unreadable: ["Permission denied" if kind == "duckdb" else "unable to open"],
        closed / FILE_NAMES[kind]: ["Permission denied"],
        missing: ["Permission denied"],
    }

    def run_all() -> list[tuple[Path, str, tuple[int, str, str, str | None]]]:
        return [
            (path, command, run_cli(command, "--url", url_of(kind, path)))
            for path in cases
            for command in ("status", "stats", "migrate")
        ]

    for path, command, outcome in as_other_user(run_all):
        # Reading commands never create: for them a missing file is just missing.
        said = ["does not exist"] if path == missing and command != "migrate" else cases[path]
        assert_cli_says(outcome, *said)
        assert str(path.parent) in outcome[2]
    assert not (shared / "new").exists()
    assert raw_message_count(kind, unreadable) == 6


# -- cleanups -------------------------------------------------------------------------------


def test_a_cleanup_that_fails_never_hides_the_cause(savepoint_backend: SQLBackend) -> None:
    backend = savepoint_backend
    with pytest.raises(ValueError, match="the caller's own error") as caused, backend.transaction():
        backend.save_conversation(conversation("outer"))
        with backend.transaction():
            backend.save_conversation(conversation("inner"))
            with backend._reading("test") as conn:  # the savepoint goes away under it
                conn.execute("RELEASE SAVEPOINT sp_1")
            raise ValueError("the caller's own error")
    notes = "\n".join(getattr(caused.value, "__notes__", []))
    assert "rollback (to savepoint) failed" in notes and "sp_1" in notes, notes
    assert not backend.in_transaction  # both levels ended
    assert backend.get_conversation("outer") is None
    assert backend.get_conversation("inner") is None
    backend.save_conversation(conversation("after"))
    assert backend.get_conversation("after") is not None


def test_the_command_turns_an_unexpected_error_into_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite://{tmp_path}/a\x00b.db"  # the OS refuses the path with a ValueError
    outcome = run_cli("stats", "--url", url)
    assert_cli_says(outcome, "unexpected ValueError", "embedded null byte", DEBUG_ENV)
    monkeypatch.setenv(DEBUG_ENV, "1")
    result = CliRunner().invoke(main, ["stats", "--url", url])
    assert isinstance(result.exception, ValueError)  # the traceback, when asked for
