"""Safe migrations of real SQLite archives (issue 8: defect 4, backups and checks, defect 10).

1. Upgrading is linear: the work (SQLite VM steps, counted, so the machine's speed does
   not matter) of migrations 0002 and 0003 grows about as the archive does. Their first
   texts, kept in ``historical/sqlite/``, grew quadratically; the same test shows it.
2. The fixed scripts have the effect of their first texts, and name them
   (``-- polylogue: replaces sha256:...``): a database that applied a first text is not
   drift; any other checksum still is; a misspelt directive is refused.
3. A database that holds a schema is backed up before it is migrated: by the backend
   opening it, the function API, ``polylogue migrate``; the copy is owner-only, one file,
   at the old version with the same rows, and restores. ``--no-backup``/``backup=False``
   write none; a new, empty or memory database gets none; a backup that cannot be written
   (file size limit) stops the migration before it starts and leaves nothing behind.
4. A script whose result fails ``foreign_key_check`` or ``quick_check`` (a dangling
   reference, a damaged index, a NULL in a NOT NULL column) is rolled back: the database
   stays at its version with its rows, and the error names the backup.
5. A database newer than the code is refused by every path without a byte changed and
   without -wal/-shm files left behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from polylogue.cli import main
from polylogue.errors import MigrationError, SchemaVersionError
from polylogue.storage.backends import create_backend
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.db import SCHEMA_VERSION, open_connection
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.migration_scripts import REPLACES_DIRECTIVE, discover
from polylogue.storage.sqlfiles import resource_dir
from tests.test_migrations_sqlite import HISTORICAL_DDL, build_historical_db

PACKAGED = resource_dir("migrations", "sqlite")
FIRST_TEXTS = Path(__file__).resolve().parent / "historical" / "sqlite"
"""The first texts of the SQLite scripts rewritten since, byte for byte as they shipped."""
REWRITTEN = ("0002_attachment_refs", "0003_runs_primary_key")
AFTER_3 = [s.name for s in discover("sqlite") if s.version > 3]
"""The scripts a database left at version 3 by the code as it shipped still needs."""


# -- building and looking at archives --------------------------------------------------------


def build_v1(path: Path, *, attachments: int, runs: int) -> None:
    """A version-1 archive: 4 attachments per conversation, every fifth attachment referred
    to again by another conversation, references without a message or to one deleted
    since, and runs with NULL and repeated ids."""
    conversations = max(10, attachments // 4)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for ddl in HISTORICAL_DDL[1]:
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.executemany(
            "INSERT INTO conversations VALUES (?, 'chatgpt', ?, 't', NULL, NULL, 'h', ?, 1)",
            [(f"c{c}", f"p{c}", f'{{"source": "s{c % 3}"}}') for c in range(conversations)],
        )
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, NULL, 'user', ?, NULL, 'h', NULL, 1)",
            [
                (f"c{c}:m{m}", f"c{c}", f"text {c} {m}")
                for c in range(conversations)
                for m in (0, 1)
            ],
        )
        rows = []
        for a in range(attachments):
            owners = [a % conversations] + ([(a * 7 + 3) % conversations] if a % 5 == 0 else [])
            for c in owners:
                message = (f"c{c}:m{a % 2}", None, f"c{c}:gone")[a % 3 if a % 4 == 0 else 0]
                rows.append((f"a{a}", f"c{c}", message, "image/png", a, f"/f/{a}", None))
        conn.executemany("INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO runs (run_id, timestamp) VALUES (?, '2024-01-01T00:00:00Z')",
            [(None if r % 10 == 0 else f"r{r // 2 if r % 7 == 0 else r}",) for r in range(runs)],
        )
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
    finally:
        conn.close()


def first_texts_folder(tmp_path: Path, *, up_to: int | None = None) -> Path:
    """The packaged scripts with the rewritten ones as they first shipped."""
    folder = tmp_path / "first-texts"
    folder.mkdir(exist_ok=True)
    for script in PACKAGED.glob("*.sql"):
        if up_to is None or int(script.name[:4]) <= up_to:
            source = FIRST_TEXTS / script.name if script.stem in REWRITTEN else script
            shutil.copyfile(source, folder / script.name)
    return folder


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def contents(path: Path) -> dict[str, Any]:
    """Version, schema (without page numbers) and every row of every table, sorted;
    ``schema_migrations`` without the time of applying."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        found: dict[str, Any] = {
            "(version)": conn.execute("PRAGMA user_version").fetchone()[0],
            "(schema)": sorted(
                conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
            ),
        }
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = "version, name, checksum" if table == "schema_migrations" else "*"
            rows = conn.execute(f'SELECT {columns} FROM "{table}"').fetchall()
            found[table] = sorted(rows, key=repr)
    finally:
        conn.close()
    return found


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def backups(db: Path) -> list[Path]:
    return sorted(db.parent.glob(f"{db.name}.pre-v*"))


@pytest.fixture
def v1_archive(tmp_path: Path) -> Path:
    """The historical fixture at version 1 (unicode, U+0000, shared and dangling refs)."""
    db = tmp_path / "archive.db"
    build_historical_db(db, 1)
    return db


class CountingRunner(MigrationRunner):
    """The runner, counting the VM steps each script takes on SQLite (progress handler)."""

    GRAIN = 100

    def __init__(self, backend: SQLiteBackend, folder: Path) -> None:
        super().__init__(backend, folder)
        self.names = {s.sql: s.name for s in self.scripts}
        self.steps: dict[str, int] = {}

    def run_script(self, conn: sqlite3.Connection, sql: str) -> None:
        ticks = 0

        def tick() -> int:
            nonlocal ticks
            ticks += 1
            return 0

        conn.set_progress_handler(tick, self.GRAIN)
        try:
            super().run_script(conn, sql)
        finally:
            conn.set_progress_handler(None, 0)
        self.steps[self.names[sql]] = ticks * self.GRAIN


def script_steps(db: Path, folder: Path) -> dict[str, int]:
    backend = SQLiteBackend(db, migrate=False, backup=False)
    try:
        runner = CountingRunner(backend, folder)
        runner.migrate()
    finally:
        backend.close()
    return runner.steps


# -- 1. linear upgrades ------------------------------------------------------------------------

SMALL, LARGE = 300, 2400  # attachments and runs; 8 times as many
LINEAR_LIMIT = 16  # 8x the rows: n log n stays well under 2x of 8; n^2 would be 64


@pytest.mark.parametrize("texts", ["packaged", "first"])
def test_upgrade_work_grows_linearly_with_the_archive(tmp_path: Path, texts: str) -> None:
    folder = PACKAGED if texts == "packaged" else first_texts_folder(tmp_path)
    steps = {}
    for size in (SMALL, LARGE):
        db = tmp_path / f"v1-{size}.db"
        build_v1(db, attachments=size, runs=size)
        steps[size] = script_steps(db, folder)
    growth = {name: steps[LARGE][name] / steps[SMALL][name] for name in REWRITTEN}
    if texts == "packaged":
        assert all(g < LINEAR_LIMIT for g in growth.values()), growth
    else:  # the first texts recounted and deduplicated by scanning: quadratic (defect 4)
        assert all(g > 2 * LINEAR_LIMIT for g in growth.values()), growth


# -- 2. a rewritten script names the text it replaces ------------------------------------------


def test_rewritten_scripts_replace_exactly_their_first_texts() -> None:
    scripts = {s.name: s for s in discover("sqlite")}
    assert sorted(name for name, s in scripts.items() if s.replaces) == list(REWRITTEN)
    for name in REWRITTEN:
        assert scripts[name].replaces == {sha256_file(FIRST_TEXTS / f"{name}.sql")}
        assert f"{REPLACES_DIRECTIVE}{sha256_file(FIRST_TEXTS / f'{name}.sql')}" in (
            scripts[name].sql
        )


@pytest.mark.parametrize("build", ["historical", "generated"])
def test_rewritten_scripts_have_the_effect_of_their_first_texts(tmp_path: Path, build: str) -> None:
    source = tmp_path / "v1.db"
    if build == "historical":
        build_historical_db(source, 1)
    else:
        build_v1(source, attachments=200, runs=60)
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    shutil.copyfile(source, old)
    shutil.copyfile(source, new)
    first = first_texts_folder(tmp_path)
    for db, folder in ((old, first), (new, PACKAGED)):
        backend = SQLiteBackend(db, migrate=False, backup=False)
        try:
            MigrationRunner(backend, folder).migrate()
        finally:
            backend.close()

    got_old, got_new = contents(old), contents(new)
    recorded_old = got_old.pop("schema_migrations")
    recorded_new = got_new.pop("schema_migrations")
    assert got_old == got_new
    assert got_new["attachment_refs"] and got_new["runs"]
    by_version = {s.version: s for s in discover("sqlite")}
    for (version, name, old_sum), (_, _, new_sum) in zip(recorded_old, recorded_new, strict=True):
        assert new_sum == by_version[version].checksum
        if name in REWRITTEN:
            assert old_sum in by_version[version].replaces
        else:
            assert old_sum == new_sum


def test_database_that_applied_a_first_text_is_not_drift(tmp_path: Path, v1_archive: Path) -> None:
    # Migrated to version 3 by the code as it shipped: the first texts are recorded.
    backend = SQLiteBackend(v1_archive, migrate=False, backup=False)
    try:
        MigrationRunner(backend, first_texts_folder(tmp_path, up_to=3)).migrate()
    finally:
        backend.close()
    backend = SQLiteBackend(v1_archive, migrate=False, backup=False)
    try:
        status = backend.migration_runner().status()
        assert status.changed == []
        assert [m.name for m in status.applied if m.earlier_text] == list(REWRITTEN)
        assert [s.name for s in status.pending] == AFTER_3
        cli = CliRunner().invoke(main, ["status", "--url", f"sqlite://{v1_archive}"])
        assert cli.exit_code == 0, cli.output
        lines = cli.stdout.splitlines()
        assert lines[lines.index("drift:") + 1] == "  (none)"
        for name in REWRITTEN:
            (line,) = [line for line in lines if line.startswith(f"  {name}  ")]
            assert "applied as an earlier text" in line
            assert "EDITED" not in line

        done = backend.migration_runner().migrate()  # no allow_changed needed
        assert [s.name for s in done] == AFTER_3
        assert backend.migration_runner().status().changed == []
    finally:
        backend.close()
    # The record keeps what was applied.
    recorded = dict(
        (name, checksum) for _, name, checksum in contents(v1_archive)["schema_migrations"]
    )
    for name in REWRITTEN:
        assert recorded[name] == sha256_file(FIRST_TEXTS / f"{name}.sql")


def test_an_unlisted_checksum_is_still_drift(tmp_path: Path, v1_archive: Path) -> None:
    folder = first_texts_folder(tmp_path, up_to=2)
    edited = folder / "0002_attachment_refs.sql"
    edited.write_bytes(edited.read_bytes() + b"-- one byte more than the first text\n")
    backend = SQLiteBackend(v1_archive, migrate=False, backup=False)
    try:
        MigrationRunner(backend, folder).migrate()
    finally:
        backend.close()
    before = contents(v1_archive)

    backend = SQLiteBackend(v1_archive, migrate=False)
    try:
        runner = backend.migration_runner()
        assert [m.name for m in runner.status().changed] == ["0002_attachment_refs"]
        with pytest.raises(MigrationError, match=r"edited since: 0002_attachment_refs"):
            runner.migrate()
    finally:
        backend.close()
    assert contents(v1_archive) == before
    assert backups(v1_archive) == []


@pytest.mark.parametrize(
    "directive",
    [
        "-- polylogue: replace sha256:" + "a" * 64,  # misspelt
        "-- polylogue: replaces sha256:" + "a" * 63,  # too short
        "-- polylogue: replaces sha256:" + "A" * 64,  # not lower-case hex
        "-- polylogue: replaces " + "a" * 64,  # no algorithm
    ],
)
def test_a_malformed_directive_is_refused(tmp_path: Path, directive: str) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_one.sql").write_text("CREATE TABLE t1 (id INTEGER);\n")
    (folder / "0002_two.sql").write_text(f"-- two\n{directive}\n\nCREATE TABLE t2 (id INTEGER);\n")
    with pytest.raises(MigrationError, match=r"0002_two\.sql:2: unknown migration directive"):
        discover("sqlite", folder)


def test_no_transaction_marker_below_the_first_line_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_one.sql").write_text(
        "-- one\n-- polylogue: no-transaction\nCREATE TABLE t1 (id INTEGER);\n"
    )
    with pytest.raises(MigrationError, match=r"0001_one\.sql:2: .*first line only"):
        discover("sqlite", folder)


# -- 3. backups ------------------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would let everyone read new files: backups must be 0600 anyway."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def check_backup(db: Path, before: dict[str, Any], started: datetime) -> Path:
    """The one backup beside ``db``: its name, mode, one file, the old version and rows."""
    (backup,) = backups(db)
    name = re.fullmatch(
        rf"{re.escape(db.name)}\.pre-v{SCHEMA_VERSION}-(\d{{8}}T\d{{6}}Z)\.bak", backup.name
    )
    assert name, backup.name
    taken = datetime.strptime(name[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert started - timedelta(seconds=1) <= taken <= datetime.now(UTC)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert [p.name for p in db.parent.glob(f"{backup.name}*")] == [backup.name]
    conn = sqlite3.connect(f"{backup.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    assert contents(backup) == before  # the version it had, every row as it was
    assert before["(version)"] < SCHEMA_VERSION
    return backup


def test_opening_an_old_archive_backs_it_up_first(
    tmp_path: Path, v1_archive: Path, open_umask: None
) -> None:
    before = contents(v1_archive)
    started = datetime.now(UTC)
    SQLiteBackend(v1_archive).close()
    assert user_version(v1_archive) == SCHEMA_VERSION
    backup = check_backup(v1_archive, before, started)

    # Restoring is copying the file back: it opens, and migrates to what the original became.
    restored = tmp_path / "restored.db"
    shutil.copyfile(backup, restored)
    SQLiteBackend(restored, backup=False).close()
    assert contents(restored) == contents(v1_archive)


def test_unfinished_backups_of_killed_migrations_are_removed(v1_archive: Path) -> None:
    """A process killed while copying leaves ``.partial`` files; the next backup (under
    the same migration lock) removes them."""
    before = contents(v1_archive)
    started = datetime.now(UTC)
    leftovers = [
        v1_archive.with_name(f"{v1_archive.name}.pre-v{SCHEMA_VERSION}-20260101T000000Z.bak{end}")
        for end in (".partial", ".partial-journal")
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"half a copy")
    SQLiteBackend(v1_archive).close()
    assert not any(leftover.exists() for leftover in leftovers)
    check_backup(v1_archive, before, started)


def test_function_api_backs_up_before_migrating(v1_archive: Path) -> None:
    before = contents(v1_archive)
    started = datetime.now(UTC)
    with open_connection(v1_archive) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check_backup(v1_archive, before, started)


def test_cli_migrate_backs_up_and_says_where(v1_archive: Path) -> None:
    before = contents(v1_archive)
    started = datetime.now(UTC)
    url = f"sqlite://{v1_archive}"
    dry = CliRunner().invoke(main, ["migrate", "--url", url, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert backups(v1_archive) == []

    result = CliRunner().invoke(main, ["migrate", "--url", url])
    assert result.exit_code == 0, result.output
    backup = check_backup(v1_archive, before, started)
    assert f"backup written before migrating: {backup}" in result.stdout.splitlines()
    assert user_version(v1_archive) == SCHEMA_VERSION

    again = CliRunner().invoke(main, ["migrate", "--url", url])
    assert again.exit_code == 0, again.output
    assert "backup written" not in again.stdout
    assert backups(v1_archive) == [backup]


@pytest.mark.parametrize("switch", ["cli", "backend", "create_backend", "runner"])
def test_no_backup_writes_none(v1_archive: Path, switch: str) -> None:
    if switch == "cli":
        result = CliRunner().invoke(
            main, ["migrate", "--url", f"sqlite://{v1_archive}", "--no-backup"]
        )
        assert result.exit_code == 0, result.output
        assert "backup written" not in result.stdout
    elif switch == "backend":
        SQLiteBackend(v1_archive, backup=False).close()
    elif switch == "create_backend":
        create_backend(db_path=v1_archive, backup=False).close()
    else:
        backend = SQLiteBackend(v1_archive, migrate=False)
        try:
            runner = backend.migration_runner()
            applied = [s.version for s in runner.migrate(backup=False)]
            assert applied == list(range(2, SCHEMA_VERSION + 1))
            assert runner.backup_path is None
        finally:
            backend.close()
    assert user_version(v1_archive) == SCHEMA_VERSION
    assert backups(v1_archive) == []


def test_new_empty_current_or_memory_database_gets_no_backup(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    SQLiteBackend(new).close()  # created and migrated from version 0
    SQLiteBackend(new).close()  # already current
    result = CliRunner().invoke(main, ["migrate", "--url", f"sqlite://{new}"])
    assert result.exit_code == 0, result.output
    empty = tmp_path / "empty.db"
    empty.touch()
    SQLiteBackend(empty).close()
    assert listing(tmp_path) == ["empty.db", "new.db"]
    assert user_version(new) == user_version(empty) == SCHEMA_VERSION

    memory = SQLiteBackend(":memory:", migrate=False)
    try:
        MigrationRunner(memory, first_texts_folder(tmp_path, up_to=1)).migrate()
        runner = memory.migration_runner()
        assert [s.version for s in runner.migrate()] == list(range(2, SCHEMA_VERSION + 1))
        assert runner.backup_path is None
    finally:
        memory.close()


FILE_SIZE_LIMITED = r"""
import resource, signal, sys
from polylogue.errors import DatabaseError
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
limit = int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    SQLiteBackend(sys.argv[1]).close()
except DatabaseError as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
"""


def test_a_backup_that_cannot_be_written_stops_the_migration(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    build_v1(db, attachments=2000, runs=10)
    before = contents(db)
    size = db.stat().st_size
    child = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED, str(db), str(size // 2)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 3, child.stdout + child.stderr
    message = child.stdout.strip()
    assert message.startswith("MigrationError no backup before migrating: writing a backup of")
    assert "still at version 1" in message and "--no-backup" in message
    assert contents(db) == before
    assert [n for n in listing(tmp_path) if not n.startswith("archive.db")] == []
    assert [n for n in listing(tmp_path) if ".pre-v" in n] == []


# -- 4. checks before each commit ------------------------------------------------------------


def test_a_dangling_foreign_key_rolls_back_and_names_the_backup(
    tmp_path: Path, v1_archive: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copyfile(PACKAGED / "0001_initial.sql", folder / "0001_initial.sql")
    (folder / "0002_orphan.sql").write_text(
        "INSERT INTO messages (message_id, conversation_id, content_hash, version)\n"
        "VALUES ('m-orphan', 'no-such-conversation', 'h', 1);\n"
    )
    before = contents(v1_archive)
    backend = SQLiteBackend(v1_archive, migrate=False)
    try:
        runner = MigrationRunner(backend, folder)
        with pytest.raises(MigrationError) as caught:
            runner.migrate()
    finally:
        backend.close()
    (backup,) = backups(v1_archive)
    assert runner.backup_path == backup
    message = str(caught.value)
    assert "0002_orphan.sql failed: foreign key check failed after the script" in message
    assert "still at version 1" in message
    assert message.endswith(f"the backup made before migrating is {backup}")
    assert contents(v1_archive) == before
    assert contents(backup) == before


def damage_an_index(db: Path) -> None:
    """Make the root page of the messages' conversation index an invalid page."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'idx_messages_conversation'"
        ).fetchone()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    with db.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\x00")


def null_in_a_not_null_column(db: Path) -> None:
    """A NULL content_hash, stored by lifting NOT NULL from the schema and putting it back."""
    for sql in (
        "UPDATE sqlite_master SET sql = replace(sql, 'content_hash TEXT NOT NULL',"
        " 'content_hash TEXT') WHERE name = 'messages'",
        "UPDATE messages SET content_hash = NULL WHERE message_id = 'm-2'",
        "UPDATE sqlite_master SET sql = replace(sql, 'content_hash TEXT,',"
        " 'content_hash TEXT NOT NULL,') WHERE name = 'messages'",
    ):
        conn = sqlite3.connect(db, isolation_level=None)  # a new connection reads the schema
        try:
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute(sql)
        finally:
            conn.close()


@pytest.mark.parametrize("damage", [damage_an_index, null_in_a_not_null_column])
def test_a_damaged_database_rolls_back_and_names_the_backup(v1_archive: Path, damage: Any) -> None:
    damage(v1_archive)
    before = contents(v1_archive)
    with pytest.raises(MigrationError) as caught:
        SQLiteBackend(v1_archive)
    (backup,) = backups(v1_archive)
    message = str(caught.value)
    assert "0002_attachment_refs.sql failed: quick_check failed after the script" in message
    assert "still at version 1" in message
    assert message.endswith(f"the backup made before migrating is {backup}")
    assert contents(v1_archive) == before
    assert user_version(v1_archive) == 1


# -- 5. a database newer than the code ---------------------------------------------------------


def make_newer(db: Path, journal: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"PRAGMA journal_mode = {journal}")
        conn.execute("CREATE TABLE future_table (x TEXT)")
        conn.execute("INSERT INTO future_table VALUES ('from the future')")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    finally:
        conn.close()


def _backend_opens(db: Path) -> None:
    SQLiteBackend(db).close()


def _status_of_unmigrated_backend(db: Path) -> None:
    backend = SQLiteBackend(db, migrate=False)
    try:
        backend.migration_runner().status()
    finally:
        backend.close()


def _create_backend(db: Path) -> None:
    create_backend(f"sqlite://{db}").close()


def _function_api(db: Path) -> None:
    with open_connection(db):
        pass


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_newer_database_is_refused_without_touching_it(tmp_path: Path, journal: str) -> None:
    db = tmp_path / "future.db"
    make_newer(db, journal)
    untouched = (sha256_file(db), listing(tmp_path))
    assert untouched[1] == ["future.db"]
    for attempt in (_backend_opens, _status_of_unmigrated_backend, _create_backend, _function_api):
        with pytest.raises(SchemaVersionError, match=rf"version {SCHEMA_VERSION + 5} \("):
            attempt(db)
        assert (sha256_file(db), listing(tmp_path)) == untouched, attempt.__name__
    # A read-only reader of a WAL database gets SQLite's shared-memory index and an empty
    # log beside it, as every reader does; the database itself stays as it was.
    readers_files = {"future.db-shm", "future.db-wal"} if journal == "wal" else set()
    for command in (["status"], ["migrate"], ["migrate", "--dry-run"], ["stats"]):
        result = CliRunner().invoke(main, [*command, "--url", f"sqlite://{db}"])
        assert result.exit_code == 1, (command, result.output)
        assert f"Unsupported DB schema version {SCHEMA_VERSION + 5}" in result.stderr
        assert sha256_file(db) == untouched[0], command
        assert set(listing(tmp_path)) - readers_files == {"future.db"}, command
        assert all(
            (tmp_path / name).stat().st_size == 0
            for name in ("future.db-wal",)
            if (tmp_path / name).exists()
        ), command
