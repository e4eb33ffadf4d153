"""The SQLite migration runner: old databases upgrade in place, the runner's rules hold.

1. Databases as old code left them (``user_version`` 1, 2, 3 and 4, no ``schema_migrations``
   table), built here from the historical DDL written out below, upgrade on open with every
   row intact, and end with the same schema as a fresh database.
2. The runner's rules, on small scripts in a folder of the test's own: no gaps, no duplicate
   numbers, no badly named files, a failed script changes nothing, a database newer than the
   code is refused untouched, an edited applied script is drift, a dry run changes nothing.
3. Several processes opening one new file at once apply every script exactly once.
4. ``polylogue migrate`` and ``polylogue status``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from polylogue.cli import main
from polylogue.errors import MigrationError, SchemaVersionError
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.db import SCHEMA_VERSION, open_connection
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
    make_ref_id,
)
from polylogue.storage.sqlfiles import resource_dir

PACKAGED_FOLDER = resource_dir("migrations", "sqlite")
PACKAGED_SCRIPTS = sorted(PACKAGED_FOLDER.glob("*.sql"))
CODE_VERSION = SCHEMA_VERSION

# -- historical DDL, as old versions of the code created it ---------------------------------

CONVERSATIONS_V1 = """
CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    provider_name TEXT NOT NULL,
    provider_conversation_id TEXT NOT NULL,
    title TEXT,
    created_at TEXT,
    updated_at TEXT,
    content_hash TEXT NOT NULL,
    provider_meta TEXT,
    version INTEGER NOT NULL
);
CREATE INDEX idx_conversations_provider
ON conversations (provider_name, provider_conversation_id);
"""

MESSAGES_V1 = """
CREATE TABLE messages (
    message_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    provider_message_id TEXT,
    role TEXT,
    text TEXT,
    timestamp TEXT,
    content_hash TEXT NOT NULL,
    provider_meta TEXT,
    version INTEGER NOT NULL,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE
);
CREATE INDEX idx_messages_conversation ON messages (conversation_id);
"""

# One row per reference and, as some old databases have it, no primary key: the same
# attachment_id appears once for every conversation that refers to it.
ATTACHMENTS_V1 = """
CREATE TABLE attachments (
    attachment_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id TEXT,
    mime_type TEXT,
    size_bytes INTEGER,
    path TEXT,
    provider_meta TEXT,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    FOREIGN KEY (message_id)
    REFERENCES messages (message_id) ON DELETE SET NULL
);
"""

RUNS_V1 = """
CREATE TABLE runs (
    run_id TEXT,
    timestamp TEXT NOT NULL,
    plan_snapshot TEXT,
    counts_json TEXT,
    drift_json TEXT,
    "indexed" INTEGER,
    duration_ms INTEGER
);
"""

ATTACHMENTS_V2 = """
CREATE TABLE attachments (
    attachment_id TEXT PRIMARY KEY,
    mime_type TEXT,
    size_bytes INTEGER,
    path TEXT,
    ref_count INTEGER NOT NULL DEFAULT 0,
    provider_meta TEXT
);
CREATE TABLE attachment_refs (
    ref_id TEXT PRIMARY KEY,
    attachment_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id TEXT,
    provider_meta TEXT,
    FOREIGN KEY (attachment_id)
    REFERENCES attachments (attachment_id) ON DELETE CASCADE,
    FOREIGN KEY (conversation_id)
    REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    FOREIGN KEY (message_id)
    REFERENCES messages (message_id) ON DELETE SET NULL
);
CREATE INDEX idx_attachment_refs_conversation ON attachment_refs (conversation_id);
CREATE INDEX idx_attachment_refs_message ON attachment_refs (message_id);
CREATE INDEX idx_attachment_refs_attachment ON attachment_refs (attachment_id);
"""

RUNS_V3 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    plan_snapshot TEXT,
    counts_json TEXT,
    drift_json TEXT,
    "indexed" INTEGER,
    duration_ms INTEGER
);
CREATE INDEX idx_runs_timestamp ON runs (timestamp);
"""

CONVERSATIONS_V4 = """
CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    provider_name TEXT NOT NULL,
    provider_conversation_id TEXT NOT NULL,
    title TEXT,
    created_at TEXT,
    updated_at TEXT,
    content_hash TEXT NOT NULL,
    provider_meta TEXT,
    source_name TEXT GENERATED ALWAYS AS (
        json_extract(provider_meta, '$.source')
    ) STORED,
    version INTEGER NOT NULL
);
CREATE INDEX idx_conversations_provider
ON conversations (provider_name, provider_conversation_id);
CREATE INDEX idx_conversations_source_name ON conversations (source_name);
CREATE INDEX idx_conversations_updated ON conversations (updated_at DESC, conversation_id);
"""

HISTORICAL_DDL = {
    1: [CONVERSATIONS_V1, MESSAGES_V1, ATTACHMENTS_V1, RUNS_V1],
    2: [CONVERSATIONS_V1, MESSAGES_V1, ATTACHMENTS_V2, RUNS_V1],
    3: [CONVERSATIONS_V1, MESSAGES_V1, ATTACHMENTS_V2, RUNS_V3],
    4: [CONVERSATIONS_V4, MESSAGES_V1, ATTACHMENTS_V2, RUNS_V3],
}

# -- the rows every historical database holds -----------------------------------------------

SHARED = "att-shared-🖼\x00.png"  # one attachment, referred to by two conversations
NO_MESSAGE = "att-no-message"  # a reference without a message
DANGLING = "att-dangling"  # v1: its message_id names a message that no longer exists

SHARED_META = {"source": "upload", "dims": [640, 480], "note": "ü\u0000ß"}

CONVERSATIONS = [
    ConversationRecord(
        conversation_id="conv-1",
        provider_name="chatgpt",
        provider_conversation_id="p-1 🧪",
        title="Héllo 🌍 wörld\x00after-nul",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-03-01T10:00:00+01:00",
        content_hash="hash-1",
        provider_meta={"source": "export-ü🎉", "nested": {"k": [1, 2.5, None, True]}, "z": "\x00"},
        version=1,
    ),
    ConversationRecord(
        conversation_id="conv-✨2",
        provider_name="claude",
        provider_conversation_id="p-2",
        title="",
        created_at=None,
        updated_at="2024-02-01T00:00:00Z",
        content_hash="hash-2",
        provider_meta={"source": "drive"},
        version=3,
    ),
    ConversationRecord(
        conversation_id="conv-3",
        provider_name="gemini",
        provider_conversation_id="p-3",
        title=None,
        created_at=None,
        updated_at=None,
        content_hash="hash-3",
        provider_meta=None,
        version=2,
    ),
]

MESSAGES = [
    MessageRecord(
        message_id="m-1",
        conversation_id="conv-1",
        provider_message_id="pm-1",
        role="user",
        text="hi 👋\x00 there; 'quoted' \"double\"",
        timestamp="2024-01-01T00:00:01Z",
        content_hash="mh-1",
        provider_meta={"emoji": "🦀", "list": []},
        version=1,
    ),
    MessageRecord(
        message_id="m-2",
        conversation_id="conv-1",
        provider_message_id=None,
        role="assistant",
        text="",
        timestamp=None,
        content_hash="mh-2",
        provider_meta=None,
        version=2,
    ),
    MessageRecord(
        message_id="m-3 ✨",
        conversation_id="conv-✨2",
        provider_message_id="pm-3",
        role="user",
        text="third\nline",
        timestamp="2024-02-01T00:00:00Z",
        content_hash="mh-3",
        provider_meta={"source": "drive"},
        version=1,
    ),
]

# What get_attachments returns after the upgrade, per reference.
ATTACHMENTS = [
    AttachmentRecord(
        attachment_id=SHARED,
        conversation_id="conv-1",
        message_id="m-1",
        mime_type="image/png",
        size_bytes=1234,
        path="/files/ü.png",
        provider_meta=SHARED_META,
    ),
    AttachmentRecord(
        attachment_id=SHARED,
        conversation_id="conv-✨2",
        message_id="m-3 ✨",
        mime_type="image/png",
        size_bytes=1234,
        path="/files/ü.png",
        provider_meta=SHARED_META,
    ),
    AttachmentRecord(
        attachment_id=NO_MESSAGE,
        conversation_id="conv-1",
        message_id=None,
        mime_type=None,
        size_bytes=0,
        path="",
        provider_meta=None,
    ),
    AttachmentRecord(
        attachment_id=DANGLING,
        conversation_id="conv-✨2",
        message_id=None,
        mime_type="text/plain",
        size_bytes=5,
        path="/files/d.txt",
        provider_meta={"source": "mail"},
    ),
]
EXPECTED_REF_COUNTS = {SHARED: 2, NO_MESSAGE: 1, DANGLING: 1}

# Runs as version 1 and 2 stored them: (rowid, run_id, record fields).
RUN_ROWS_V1: list[tuple[int, str | None, dict[str, Any]]] = [
    (
        1,
        "run-a",
        {
            "timestamp": "2024-01-01T00:00:00Z",
            "plan_snapshot": {"plan": ["ü", "🎯"]},
            "counts": {"conversations": 3},
            "drift": None,
            "indexed": True,
            "duration_ms": 1500,
        },
    ),
    (
        2,
        None,
        {
            "timestamp": "2024-01-02T00:00:00Z",
            "plan_snapshot": None,
            "counts": None,
            "drift": {"wave": "🌊"},
            "indexed": False,
            "duration_ms": None,
        },
    ),
    (
        3,
        "run-a",
        {
            "timestamp": "2024-01-03T00:00:00Z",
            "plan_snapshot": {},
            "counts": {"n": 0},
            "drift": None,
            "indexed": None,
            "duration_ms": 0,
        },
    ),
    (
        4,
        "run-b",
        {
            "timestamp": "2024-01-01T00:00:00Z",
            "plan_snapshot": None,
            "counts": {"x\u0000y": 1},
            "drift": None,
            "indexed": True,
            "duration_ms": 7,
        },
    ),
    (
        5,
        None,
        {
            "timestamp": "2024-01-04T00:00:00Z",
            "plan_snapshot": None,
            "counts": None,
            "drift": None,
            "indexed": None,
            "duration_ms": None,
        },
    ),
]
# The ids migration 0003 documents: NULL -> run-legacy-<rowid>, repeat -> <id>-dup-<rowid>.
UPGRADED_RUN_IDS = {1: "run-a", 2: "run-legacy-2", 3: "run-a-dup-3", 4: "run-b", 5: "run-legacy-5"}
RUNS = [RunRecord(run_id=UPGRADED_RUN_IDS[rowid], **fields) for rowid, _, fields in RUN_ROWS_V1]


def ref_id(attachment_id: str, conversation_id: str, message_id: str | None) -> str:
    """The documented ref id formula, written out independently of the package."""
    key = f"{attachment_id}:{conversation_id}:{message_id or ''}"
    return "ref-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def old_json(value: Any) -> str | None:
    """JSON as old code wrote it (json.dumps defaults: ASCII escapes, spaces)."""
    return None if value is None else json.dumps(value)


def build_historical_db(path: Path, version: int) -> None:
    """A database as the code of schema ``version`` left it: no schema_migrations table."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for ddl in HISTORICAL_DDL[version]:
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.execute(statement)
        for c in CONVERSATIONS:
            conn.execute(
                "INSERT INTO conversations (conversation_id, provider_name,"
                " provider_conversation_id, title, created_at, updated_at, content_hash,"
                " provider_meta, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.conversation_id,
                    c.provider_name,
                    c.provider_conversation_id,
                    c.title,
                    c.created_at,
                    c.updated_at,
                    c.content_hash,
                    old_json(c.provider_meta),
                    c.version,
                ),
            )
        for m in MESSAGES:
            conn.execute(
                "INSERT INTO messages (message_id, conversation_id, provider_message_id, role,"
                " text, timestamp, content_hash, provider_meta, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.message_id,
                    m.conversation_id,
                    m.provider_message_id,
                    m.role,
                    m.text,
                    m.timestamp,
                    m.content_hash,
                    old_json(m.provider_meta),
                    m.version,
                ),
            )
        if version == 1:
            for a in ATTACHMENTS:
                message_id = "m-deleted-long-ago" if a.attachment_id == DANGLING else a.message_id
                conn.execute(
                    "INSERT INTO attachments (attachment_id, conversation_id, message_id,"
                    " mime_type, size_bytes, path, provider_meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        a.attachment_id,
                        a.conversation_id,
                        message_id,
                        a.mime_type,
                        a.size_bytes,
                        a.path,
                        old_json(a.provider_meta),
                    ),
                )
        else:
            for a in ATTACHMENTS:
                conn.execute(
                    "INSERT OR IGNORE INTO attachments (attachment_id, mime_type, size_bytes,"
                    " path, ref_count, provider_meta) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        a.attachment_id,
                        a.mime_type,
                        a.size_bytes,
                        a.path,
                        EXPECTED_REF_COUNTS[a.attachment_id],
                        old_json(a.provider_meta),
                    ),
                )
                conn.execute(
                    "INSERT INTO attachment_refs (ref_id, attachment_id, conversation_id,"
                    " message_id, provider_meta) VALUES (?, ?, ?, ?, ?)",
                    (
                        ref_id(a.attachment_id, a.conversation_id, a.message_id),
                        a.attachment_id,
                        a.conversation_id,
                        a.message_id,
                        old_json(a.provider_meta),
                    ),
                )
        for rowid, run_id, fields in RUN_ROWS_V1:
            if version >= 3:  # runs has a primary key: old code stored the clean ids
                run_id = UPGRADED_RUN_IDS[rowid]
            conn.execute(
                "INSERT INTO runs (rowid, run_id, timestamp, plan_snapshot, counts_json,"
                ' drift_json, "indexed", duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    rowid,
                    run_id,
                    fields["timestamp"],
                    old_json(fields["plan_snapshot"]),
                    old_json(fields["counts"]),
                    old_json(fields["drift"]),
                    None if fields["indexed"] is None else int(fields["indexed"]),
                    fields["duration_ms"],
                ),
            )
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    finally:
        conn.close()


# -- helpers -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, independent of the package."""
    return sqlite3.connect(path, isolation_level=None)


def user_version(path: Path) -> int:
    with raw(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def table_names(path: Path) -> set[str]:
    conn = raw(path)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
    finally:
        conn.close()
    return {row[0] for row in rows}


def recorded_migrations(path: Path) -> list[tuple[int, str, str]]:
    conn = raw(path)
    try:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    finally:
        conn.close()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


def packaged_records() -> list[tuple[int, str, str]]:
    return [(int(p.name[:4]), p.stem, sha256_file(p)) for p in PACKAGED_SCRIPTS]


def snapshot(path: Path) -> tuple[int, list[str]]:
    """user_version and a full SQL dump (schema and every row): equal means unchanged."""
    conn = raw(path)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        dump = list(conn.iterdump())
    finally:
        conn.close()
    return version, dump


def schema_shape(path: Path) -> dict[str, Any]:
    """Tables with their columns, foreign keys and indexes, compared structurally."""
    conn = raw(path)
    try:
        shape: dict[str, Any] = {}
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            columns = [
                tuple(r) for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (table,))
            ]
            fks = sorted(
                tuple(r)[2:]
                for r in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (table,))
            )
            indexes = []
            for _, name, unique, origin, partial in conn.execute(
                "SELECT * FROM pragma_index_list(?)", (table,)
            ):
                cols = [
                    (r[2], r[3], r[4])
                    for r in conn.execute("SELECT * FROM pragma_index_xinfo(?)", (name,))
                    if r[5]
                ]
                indexes.append((name, unique, origin, partial, cols))
            shape[table] = {"columns": columns, "fks": fks, "indexes": sorted(indexes)}
    finally:
        conn.close()
    return shape


def dumped(records: list[Any]) -> list[dict[str, Any]]:
    return [r.model_dump() for r in records]


def messages_order(m: MessageRecord) -> tuple[bool, str, str]:
    return (m.timestamp is not None, m.timestamp or "", m.message_id)


@pytest.fixture
def backends() -> Iterator[list[SQLiteBackend]]:
    """Backends a test opens; closed at teardown."""
    opened: list[SQLiteBackend] = []
    yield opened
    for backend in opened:
        backend.close()


def write_scripts(folder: Path, scripts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def custom_runner(
    db: Path, folder: Path, backends: list[SQLiteBackend]
) -> tuple[SQLiteBackend, MigrationRunner]:
    backend = SQLiteBackend(db, migrate=False)
    backends.append(backend)
    return backend, MigrationRunner(backend, folder=folder)


# -- 1. historical databases -----------------------------------------------------------------


def test_historical_fixture_is_what_old_code_made(tmp_path: Path) -> None:
    """Guard on the fixture itself: version 1 really holds the shared id twice, NULL and
    repeated run ids, and no schema_migrations table."""
    db = tmp_path / "v1.db"
    build_historical_db(db, 1)
    conn = raw(db)
    try:
        shared = conn.execute(
            "SELECT count(*) FROM attachments WHERE attachment_id = ?", (SHARED,)
        ).fetchone()[0]
        null_runs = conn.execute("SELECT count(*) FROM runs WHERE run_id IS NULL").fetchone()[0]
        run_a = conn.execute("SELECT count(*) FROM runs WHERE run_id = 'run-a'").fetchone()[0]
        title = conn.execute(
            "SELECT title FROM conversations WHERE conversation_id = 'conv-1'"
        ).fetchone()[0]
    finally:
        conn.close()
    assert (shared, null_runs, run_a) == (2, 2, 2)
    assert title == CONVERSATIONS[0].title  # U+0000 and what follows it are stored
    assert user_version(db) == 1
    assert "schema_migrations" not in table_names(db)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_historical_database_upgrades_with_every_row(
    tmp_path: Path, version: int, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / f"v{version}.db"
    build_historical_db(db, version)

    backend = SQLiteBackend(db)  # migrates on open
    backends.append(backend)

    assert backend.schema_version() == CODE_VERSION
    assert user_version(db) == CODE_VERSION

    for expected in CONVERSATIONS:
        got = backend.get_conversation(expected.conversation_id)
        assert got is not None
        assert got.model_dump() == expected.model_dump()
        expected_messages = sorted(
            (m for m in MESSAGES if m.conversation_id == expected.conversation_id),
            key=messages_order,
        )
        assert dumped(backend.get_messages(expected.conversation_id)) == dumped(expected_messages)
        expected_attachments = sorted(
            (a for a in ATTACHMENTS if a.conversation_id == expected.conversation_id),
            key=lambda a: (a.attachment_id, a.message_id is not None, a.message_id or ""),
        )
        assert dumped(backend.get_attachments(expected.conversation_id)) == dumped(
            expected_attachments
        )

    # source_name is generated from provider_meta.source of the rows that were there
    assert [c.conversation_id for c in backend.list_conversations(source="export-ü🎉")] == [
        "conv-1"
    ]
    assert [c.conversation_id for c in backend.list_conversations(source="drive")] == ["conv-✨2"]
    assert backend.list_conversations(source="upload") == []
    assert {c.conversation_id for c in backend.list_conversations()} == {
        c.conversation_id for c in CONVERSATIONS
    }

    # runs: NULL and repeated ids kept under the ids 0003 documents
    expected_runs = sorted(RUNS, key=lambda r: (r.timestamp, r.run_id), reverse=True)
    assert dumped(backend.get_runs()) == dumped(expected_runs)

    conn = raw(db)
    try:
        refs = conn.execute(
            "SELECT ref_id, attachment_id, conversation_id, message_id, provider_meta"
            " FROM attachment_refs"
        ).fetchall()
        counts = dict(conn.execute("SELECT attachment_id, ref_count FROM attachments").fetchall())
        counted = dict(
            conn.execute(
                "SELECT attachment_id, count(*) FROM attachment_refs GROUP BY attachment_id"
            ).fetchall()
        )
        run_rows = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        conn.close()
    assert len(refs) == len(ATTACHMENTS)
    for ref, attachment, conversation, message, _meta in refs:
        assert ref == make_ref_id(attachment, conversation, message)
        assert ref == ref_id(attachment, conversation, message)
    # each ref keeps the provider_meta of the row it was (v1) or is (v2+)
    assert sorted(
        (a, c, m or "", json.dumps(None if meta is None else json.loads(meta)))
        for _, a, c, m, meta in refs
    ) == sorted(
        (a.attachment_id, a.conversation_id, a.message_id or "", json.dumps(a.provider_meta))
        for a in ATTACHMENTS
    )
    assert counts == counted == EXPECTED_REF_COUNTS
    assert run_rows == len(RUN_ROWS_V1)

    # schema_migrations: the old versions adopted, the rest applied, checksums of the files
    assert recorded_migrations(db) == packaged_records()
    status = backend.migration_runner().status()
    assert status.current_version == CODE_VERSION
    assert status.pending == []
    assert status.unrecorded == []
    assert status.changed == []


@pytest.mark.parametrize("version", [1, 2, 3])
def test_upgraded_schema_equals_fresh_schema(tmp_path: Path, version: int) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    build_historical_db(old, version)
    SQLiteBackend(old).close()
    SQLiteBackend(fresh).close()
    assert schema_shape(old) == schema_shape(fresh)
    assert "source_name" in {c[1] for c in schema_shape(old)["conversations"]["columns"]}


def test_upgraded_database_takes_writes(tmp_path: Path, backends: list[SQLiteBackend]) -> None:
    """The rebuilt tables have their keys: upserts that need them work after the upgrade."""
    db = tmp_path / "v1.db"
    build_historical_db(db, 1)
    backend = SQLiteBackend(db)
    backends.append(backend)

    new_ref = AttachmentRecord(attachment_id=NO_MESSAGE, conversation_id="conv-3")
    assert backend.save_attachments([new_ref]) == 1
    assert backend.save_attachments([new_ref]) == 0  # same ref again changes nothing
    backend.record_run(RunRecord(run_id="run-a", timestamp="2025-01-01T00:00:00Z"))
    # Saving a stored conversation again leaves it as it was. (The first save after the
    # upgrade may rewrite the row once: old code wrote provider_meta JSON with other spacing.)
    backend.save_conversation(CONVERSATIONS[0])
    assert backend.save_conversation(CONVERSATIONS[0]) == 0
    got = backend.get_conversation("conv-1")
    assert got is not None
    assert got.model_dump() == CONVERSATIONS[0].model_dump()

    conn = raw(db)
    try:
        count = conn.execute(
            "SELECT ref_count FROM attachments WHERE attachment_id = ?", (NO_MESSAGE,)
        ).fetchone()[0]
        run_a = conn.execute("SELECT timestamp FROM runs WHERE run_id = 'run-a'").fetchall()
    finally:
        conn.close()
    assert count == 2
    assert run_a == [("2025-01-01T00:00:00Z",)]
    assert [(a.attachment_id, a.size_bytes) for a in backend.get_attachments("conv-3")] == [
        (NO_MESSAGE, 0)
    ]


# SQLite's JSON functions cut strings at U+0000, so attachment ids are bound one per row
# (never through json_each): an id holding U+0000 keeps a correct ref_count after upgrade.
def test_ref_count_of_attachment_id_holding_nul_after_upgrade(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "v1.db"
    build_historical_db(db, 1)
    backend = SQLiteBackend(db)
    backends.append(backend)
    assert (
        backend.save_attachments([AttachmentRecord(attachment_id=SHARED, conversation_id="conv-3")])
        == 1
    )
    conn = raw(db)
    try:
        count = conn.execute(
            "SELECT ref_count FROM attachments WHERE attachment_id = ?", (SHARED,)
        ).fetchone()[0]
    finally:
        conn.close()
    assert count == 3


# Documented limitation: source_name is generated with json_extract(), which (SQLite 3.40)
# cuts a string at an escaped U+0000. New records cannot carry such a source (validation
# refuses it, naming the field); a legacy row keeps its data but is indexed by the prefix.
def test_source_name_holding_nul_is_refused_and_legacy_rows_keep_their_data(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "v3.db"
    build_historical_db(db, 3)
    conn = raw(db)
    conn.execute(
        "INSERT INTO conversations (conversation_id, provider_name, provider_conversation_id,"
        " content_hash, provider_meta, version) VALUES ('conv-nul', 'x', 'p', 'h', ?, 1)",
        (json.dumps({"source": "a\x00b"}),),
    )
    conn.close()
    backend = SQLiteBackend(db)
    backends.append(backend)
    legacy = backend.get_conversation("conv-nul")
    assert legacy is not None and legacy.provider_meta == {"source": "a\x00b"}
    assert [c.conversation_id for c in backend.list_conversations(source="a")] == ["conv-nul"]
    with pytest.raises(ValidationError, match="provider_meta"):
        ConversationRecord(
            conversation_id="new",
            provider_name="x",
            provider_conversation_id="p",
            content_hash="h",
            provider_meta={"source": "a\x00b"},
        )


def test_version_4_database_from_old_code_is_adopted(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "v4.db"
    build_historical_db(db, 4)
    before = schema_shape(db)

    backend = SQLiteBackend(db)
    backends.append(backend)

    assert backend.schema_version() == CODE_VERSION
    assert recorded_migrations(db) == packaged_records()
    after = schema_shape(db)
    assert set(after) - set(before) == {"schema_migrations"}
    assert {t: s for t, s in after.items() if t != "schema_migrations"} == before
    assert dumped(backend.list_conversations(source="drive")) == dumped([CONVERSATIONS[1]])
    assert dumped(backend.get_runs()) == dumped(
        sorted(RUNS, key=lambda r: (r.timestamp, r.run_id), reverse=True)
    )
    # Opening again changes nothing more.
    backend.close()
    again = SQLiteBackend(db)
    backends.append(again)
    assert recorded_migrations(db) == packaged_records()


def test_function_api_upgrades_old_database(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    build_historical_db(db, 1)
    with open_connection(db) as conn:
        title = conn.execute(
            "SELECT title FROM conversations WHERE source_name = ?", ("export-ü🎉",)
        ).fetchone()[0]
    assert title == CONVERSATIONS[0].title
    assert user_version(db) == CODE_VERSION
    assert recorded_migrations(db) == packaged_records()


def test_orphan_rows_stop_the_upgrade_and_leave_version_1(tmp_path: Path) -> None:
    """Old code ran without foreign keys: a message of a deleted conversation makes the
    foreign key check after 0002 fail; the database stays exactly as it was."""
    db = tmp_path / "v1.db"
    build_historical_db(db, 1)
    conn = raw(db)
    conn.execute(
        "INSERT INTO messages (message_id, conversation_id, content_hash, version)"
        " VALUES ('orphan', 'conv-gone', 'h', 1)"
    )
    conn.close()
    before = snapshot(db)

    with pytest.raises(MigrationError, match=r"foreign key check failed.*'messages'"):
        SQLiteBackend(db)

    version, dump = snapshot(db)
    assert version == 1
    # 0001 is adopted (recorded) before 0002 is tried, in 0002's transaction: undone too.
    assert dump == before[1]


# A failed foreign_key_check reads like every other failing script: "migration NNNN_x.sql
# failed: ...; the database is still at version N".
def test_foreign_key_failure_names_the_script(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    build_historical_db(db, 1)
    conn = raw(db)
    conn.execute(
        "INSERT INTO messages (message_id, conversation_id, content_hash, version)"
        " VALUES ('orphan', 'conv-gone', 'h', 1)"
    )
    conn.close()
    with pytest.raises(MigrationError, match=r"0002_attachment_refs\.sql.*still at version 1"):
        SQLiteBackend(db)


# -- 2. the runner's rules, on scripts of the test's own ---------------------------------------

S1 = """-- one: a table, and a row whose text holds a semicolon
CREATE TABLE t1 (id INTEGER PRIMARY KEY, note TEXT);
INSERT INTO t1 (note) VALUES ('one; with a semicolon');
"""
S2 = "CREATE TABLE t2 (id INTEGER);\nINSERT INTO t1 (note) VALUES ('two');\n"
S3 = "CREATE TABLE t3 (id INTEGER);\n"


def test_runner_applies_custom_scripts_in_order(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    folder = write_scripts(
        tmp_path / "m", {"0001_one.sql": S1, "0002_two.sql": S2, "README.md": "not a script"}
    )
    db = tmp_path / "db.sqlite"
    _backend, runner = custom_runner(db, folder, backends)

    done = runner.migrate()

    assert [s.name for s in done] == ["0001_one", "0002_two"]
    assert user_version(db) == 2
    assert recorded_migrations(db) == [
        (1, "0001_one", sha256_file(folder / "0001_one.sql")),
        (2, "0002_two", sha256_file(folder / "0002_two.sql")),
    ]
    conn = raw(db)
    notes = [r[0] for r in conn.execute("SELECT note FROM t1 ORDER BY id")]
    conn.close()
    assert notes == ["one; with a semicolon", "two"]
    assert runner.migrate() == []  # nothing pending: nothing done, nothing recorded twice
    assert len(recorded_migrations(db)) == 2


def test_gap_in_numbers_is_refused(tmp_path: Path, backends: list[SQLiteBackend]) -> None:
    folder = write_scripts(tmp_path / "m", {"0001_one.sql": S1, "0003_three.sql": S3})
    db = tmp_path / "db.sqlite"
    with pytest.raises(MigrationError, match=r"version 2\b.*0003_three\.sql"):
        custom_runner(db, folder, backends)
    assert user_version(db) == 0
    assert table_names(db) == set()


def test_duplicate_number_is_refused_naming_both(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    folder = write_scripts(tmp_path / "m", {"0001_one.sql": S1, "0002_a.sql": S2, "0002_b.sql": S3})
    db = tmp_path / "db.sqlite"
    with pytest.raises(MigrationError) as caught:
        custom_runner(db, folder, backends)
    assert "0002_a.sql" in str(caught.value)
    assert "0002_b.sql" in str(caught.value)
    assert table_names(db) == set()


@pytest.mark.parametrize(
    "bad_name", ["2_two.sql", "0002-two.sql", "0002_Two.sql", "00002_two.sql", "0002_.sql"]
)
def test_badly_named_script_is_refused(
    tmp_path: Path, bad_name: str, backends: list[SQLiteBackend]
) -> None:
    folder = write_scripts(tmp_path / "m", {"0001_one.sql": S1, bad_name: S2})
    with pytest.raises(MigrationError, match=re.escape(bad_name) + ".*NNNN_short_slug"):
        custom_runner(tmp_path / "db.sqlite", folder, backends)


def test_empty_folder_is_refused(tmp_path: Path, backends: list[SQLiteBackend]) -> None:
    folder = write_scripts(tmp_path / "m", {})
    with pytest.raises(MigrationError, match="no migration scripts"):
        custom_runner(tmp_path / "db.sqlite", folder, backends)


def test_failing_script_leaves_database_exactly_at_previous_version(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "db.sqlite"
    good = write_scripts(tmp_path / "good", {"0001_one.sql": S1})
    custom_runner(db, good, backends)[1].migrate()
    before = snapshot(db)
    assert before[0] == 1

    bad_script = (
        "CREATE TABLE t2 (id INTEGER);\n"
        "INSERT INTO t1 (note) VALUES ('from the failed script');\n"
        "THIS IS NOT SQL AT ALL;\n"
        "CREATE TABLE t9 (id INTEGER);\n"
    )
    bad = write_scripts(tmp_path / "bad", {"0001_one.sql": S1, "0002_broken.sql": bad_script})
    _, runner = custom_runner(db, bad, backends)
    with pytest.raises(MigrationError, match=r"0002_broken\.sql.*still at version 1"):
        runner.migrate()

    assert snapshot(db) == before  # same user_version, schema, rows, schema_migrations
    assert table_names(db) == {"t1", "schema_migrations"}
    assert recorded_migrations(db) == [(1, "0001_one", sha256_file(good / "0001_one.sql"))]
    # The backend is still usable afterwards: no transaction left open.
    assert runner.status().current_version == 1


def test_failing_first_script_on_fresh_database_leaves_it_empty(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "db.sqlite"
    folder = write_scripts(
        tmp_path / "m", {"0001_one.sql": "CREATE TABLE t1 (id INTEGER);\nSELECT nope FROM t1;\n"}
    )
    with pytest.raises(MigrationError, match="still at version 0"):
        custom_runner(db, folder, backends)[1].migrate()
    assert user_version(db) == 0
    assert table_names(db) == set()


def test_no_transaction_marker_is_refused_on_sqlite(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "db.sqlite"
    folder = write_scripts(
        tmp_path / "m",
        {"0001_one.sql": S1, "0002_concurrent.sql": "-- polylogue: no-transaction\n" + S3},
    )
    _, runner = custom_runner(db, folder, backends)
    with pytest.raises(MigrationError, match="no-transaction marker"):
        runner.migrate()
    assert user_version(db) == 1
    assert table_names(db) == {"t1", "schema_migrations"}


# Refusing a no-transaction script on SQLite names the script that carries the marker.
def test_no_transaction_refusal_names_the_script(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    folder = write_scripts(
        tmp_path / "m",
        {"0001_one.sql": S1, "0002_concurrent.sql": "-- polylogue: no-transaction\n" + S3},
    )
    _, runner = custom_runner(tmp_path / "db.sqlite", folder, backends)
    with pytest.raises(MigrationError, match=r"0002_concurrent\.sql"):
        runner.migrate()


def test_baseline_may_start_history_on_an_empty_database(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    folder = write_scripts(
        tmp_path / "m",
        {"0003_baseline.sql": S1 + S3, "0004_four.sql": "CREATE TABLE t4 (id INTEGER);\n"},
    )
    db = tmp_path / "db.sqlite"
    _, runner = custom_runner(db, folder, backends)
    assert [s.name for s in runner.migrate()] == ["0003_baseline", "0004_four"]
    assert user_version(db) == 4
    assert [r[:2] for r in recorded_migrations(db)] == [(3, "0003_baseline"), (4, "0004_four")]
    assert runner.status().unrecorded == []


def test_baseline_is_refused_on_a_database_at_an_older_version(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "db.sqlite"
    custom_runner(db, write_scripts(tmp_path / "old", {"0001_one.sql": S1}), backends)[1].migrate()
    before = snapshot(db)
    folder = write_scripts(tmp_path / "m", {"0003_baseline.sql": S3})
    _, runner = custom_runner(db, folder, backends)
    with pytest.raises(MigrationError, match=r"0003_baseline\.sql.*version 1"):
        runner.migrate()
    assert snapshot(db) == before


def test_baseline_is_refused_on_a_database_one_version_below_it(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    """A baseline creates every table: on a database at version N - 1 it would run into
    the tables that database already has, so it is refused before it starts."""
    db = tmp_path / "db.sqlite"
    old = {"0001_one.sql": S1, "0002_two.sql": S2}
    custom_runner(db, write_scripts(tmp_path / "old", old), backends)[1].migrate()
    before = snapshot(db)
    folder = write_scripts(tmp_path / "m", {"0003_baseline.sql": S3})
    _, runner = custom_runner(db, folder, backends)
    with pytest.raises(MigrationError, match=r"0003_baseline\.sql.*version 2.*empty database"):
        runner.migrate()
    assert snapshot(db) == before


def test_history_above_1_without_baseline_is_refused(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    folder = write_scripts(tmp_path / "m", {"0002_two.sql": S2, "0003_three.sql": S3})
    with pytest.raises(MigrationError, match=r"version 1 before 0002_two\.sql"):
        custom_runner(tmp_path / "db.sqlite", folder, backends)


def _make_newer_db(db: Path) -> tuple[int, list[str]]:
    conn = raw(db)
    conn.execute("CREATE TABLE future_table (x TEXT)")
    conn.execute("INSERT INTO future_table VALUES ('from the future')")
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    return snapshot(db)


def _assert_untouched(db: Path, before: tuple[int, list[str]]) -> None:
    assert snapshot(db) == before
    assert user_version(db) == 9
    assert "schema_migrations" not in table_names(db)


def test_newer_database_is_refused_by_runner(tmp_path: Path, backends: list[SQLiteBackend]) -> None:
    db = tmp_path / "db.sqlite"
    before = _make_newer_db(db)
    folder = write_scripts(tmp_path / "m", {"0001_one.sql": S1, "0002_two.sql": S2})
    _, runner = custom_runner(db, folder, backends)

    with pytest.raises(SchemaVersionError) as caught:
        runner.migrate()
    assert str(caught.value).startswith("Unsupported DB schema version 9 (expected 2)")
    with pytest.raises(SchemaVersionError, match=r"Unsupported DB schema version 9 \(expected 2\)"):
        runner.migrate(dry_run=True)
    with pytest.raises(SchemaVersionError, match=r"Unsupported DB schema version 9 \(expected 2\)"):
        runner.status()
    _assert_untouched(db, before)


def test_newer_database_is_refused_by_backend(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    before = _make_newer_db(db)
    with pytest.raises(SchemaVersionError) as caught:
        SQLiteBackend(db)
    assert str(caught.value).startswith(
        f"Unsupported DB schema version 9 (expected {CODE_VERSION})"
    )
    _assert_untouched(db, before)


def test_newer_database_is_refused_by_function_api(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    before = _make_newer_db(db)
    with pytest.raises(SchemaVersionError) as caught, open_connection(db):
        pytest.fail("open_connection must not hand out a connection")  # pragma: no cover
    assert str(caught.value).startswith(
        f"Unsupported DB schema version 9 (expected {CODE_VERSION})"
    )
    _assert_untouched(db, before)


def test_edited_applied_script_is_drift(tmp_path: Path, backends: list[SQLiteBackend]) -> None:
    db = tmp_path / "db.sqlite"
    folder = write_scripts(tmp_path / "m", {"0001_one.sql": S1, "0002_two.sql": S2})
    _, runner = custom_runner(db, folder, backends)
    runner.migrate()
    applied_checksum = sha256_file(folder / "0001_one.sql")

    # One byte of an applied script changes (in a comment: harmless, but still drift).
    (folder / "0001_one.sql").write_text(S1.replace("-- one:", "-- One:"), encoding="utf-8")
    (folder / "0003_three.sql").write_text(S3, encoding="utf-8")
    _, runner = custom_runner(db, folder, backends)

    status = runner.status()
    assert [(m.name, m.checksum, m.file_checksum) for m in status.changed] == [
        ("0001_one", applied_checksum, sha256_file(folder / "0001_one.sql"))
    ]
    assert [s.name for s in status.pending] == ["0003_three"]

    with pytest.raises(MigrationError, match=r"0001_one.*allow_changed"):
        runner.migrate()
    assert user_version(db) == 2
    assert "t3" not in table_names(db)

    done = runner.migrate(allow_changed=True)
    assert [s.name for s in done] == ["0003_three"]
    assert user_version(db) == 3
    assert "t3" in table_names(db)
    # The record keeps the checksum that was applied, not the edited file's.
    assert recorded_migrations(db)[0] == (1, "0001_one", applied_checksum)


def test_dry_run_lists_pending_and_changes_nothing(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "db.sqlite"
    backend = SQLiteBackend(db, migrate=False)
    backends.append(backend)

    pending = backend.migration_runner().migrate(dry_run=True)

    assert [s.name for s in pending] == [p.stem for p in PACKAGED_SCRIPTS]
    assert [s.checksum for s in pending] == [sha256_file(p) for p in PACKAGED_SCRIPTS]
    assert user_version(db) == 0
    assert table_names(db) == set()
    assert backend.schema_version() == 0

    # Part-way: only what is pending is listed.
    folder = write_scripts(tmp_path / "m", {"0001_one.sql": S1, "0002_two.sql": S2})
    other = tmp_path / "other.sqlite"
    write_scripts(tmp_path / "first", {"0001_one.sql": S1})
    custom_runner(other, tmp_path / "first", backends)[1].migrate()
    before = snapshot(other)
    _, runner = custom_runner(other, folder, backends)
    assert [s.name for s in runner.migrate(dry_run=True)] == ["0002_two"]
    assert snapshot(other) == before


def test_old_database_status_reports_unrecorded_versions(
    tmp_path: Path, backends: list[SQLiteBackend]
) -> None:
    db = tmp_path / "v2.db"
    build_historical_db(db, 2)
    backend = SQLiteBackend(db, migrate=False)
    backends.append(backend)
    status = backend.migration_runner().status()
    assert status.current_version == 2
    assert status.unrecorded == [1, 2]
    assert status.applied == []
    assert [s.version for s in status.pending] == [3, 4]
    assert "schema_migrations" not in table_names(db)  # status changes nothing


# -- 3. several processes migrating one new file at once ---------------------------------------

CHILD = r"""
import sys, time
from pathlib import Path
db, ready, start, folder = sys.argv[1:5]
from polylogue.storage.backends.sqlite.backend import SQLiteBackend
from polylogue.storage.migrate import MigrationRunner
Path(ready).touch()
deadline = time.monotonic() + 30
while not Path(start).exists():
    if time.monotonic() > deadline:
        sys.exit("the start file never appeared")
    time.sleep(0.001)
if folder == "-":
    backend = SQLiteBackend(db)
    print("version", backend.schema_version())
else:
    backend = SQLiteBackend(db, migrate=False)
    done = MigrationRunner(backend, folder=Path(folder)).migrate()
    print("applied", " ".join(str(s.version) for s in done))
backend.close()
"""


def run_racing_children(tmp_path: Path, db: Path, folder: str, n: int = 4) -> list[str]:
    """Start ``n`` processes, release them together, return their stdout (all exit 0)."""
    start = tmp_path / "go"
    children = []
    readies = []
    for i in range(n):
        ready = tmp_path / f"ready-{i}"
        readies.append(ready)
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(db), str(ready), str(start), folder],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.monotonic() + 30
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "children did not start"
            assert all(c.poll() is None for c in children), [c.communicate() for c in children]
            time.sleep(0.005)
        start.touch()
        outputs = [c.communicate(timeout=60) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    for c, (_out, err) in zip(children, outputs, strict=True):
        assert c.returncode == 0, err
    return [out for out, _ in outputs]


@pytest.mark.slow
def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    outputs = run_racing_children(tmp_path, db, "-")
    assert [o.strip() for o in outputs] == [f"version {CODE_VERSION}"] * 4
    assert user_version(db) == CODE_VERSION
    assert recorded_migrations(db) == packaged_records()
    fresh = tmp_path / "fresh.db"
    SQLiteBackend(fresh).close()
    assert schema_shape(db) == schema_shape(fresh)


@pytest.mark.slow
def test_processes_racing_over_a_slow_script_apply_each_once(tmp_path: Path) -> None:
    folder = write_scripts(
        tmp_path / "m",
        {
            "0001_counter.sql": (
                "CREATE TABLE applied (version INTEGER NOT NULL);\n"
                "INSERT INTO applied (version) VALUES (1);\n"
            ),
            "0002_slow.sql": (
                "CREATE TABLE bulk (n INTEGER NOT NULL);\n"
                "WITH RECURSIVE c (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c"
                " WHERE n < 200000)\n"
                "INSERT INTO bulk (n) SELECT n FROM c;\n"
                "INSERT INTO applied (version) VALUES (2);\n"
            ),
            "0003_after.sql": "INSERT INTO applied (version) VALUES (3);\n",
        },
    )
    db = tmp_path / "race.db"
    outputs = run_racing_children(tmp_path, db, str(folder))

    applied_by_children = sorted(
        int(v) for o in outputs for v in o.split()[1:] if o.startswith("applied")
    )
    assert applied_by_children == [1, 2, 3]  # each script applied by exactly one process
    conn = raw(db)
    try:
        counter = conn.execute(
            "SELECT version, count(*) FROM applied GROUP BY version ORDER BY version"
        ).fetchall()
        bulk = conn.execute("SELECT count(*), count(DISTINCT n) FROM bulk").fetchone()
    finally:
        conn.close()
    assert counter == [(1, 1), (2, 1), (3, 1)]
    assert bulk == (200000, 200000)
    assert user_version(db) == 3
    assert [r[0] for r in recorded_migrations(db)] == [1, 2, 3]


# -- 4. the polylogue command --------------------------------------------------------------------


def test_cli_migrate_dry_run_then_migrate_then_status(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    url = f"sqlite://{db}"
    runner = CliRunner()
    names = [p.stem for p in PACKAGED_SCRIPTS]

    missing = runner.invoke(main, ["status", "--url", url])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert not db.exists()  # reading commands never create
    sqlite3.connect(db).close()  # an empty file: a database at version 0

    status = runner.invoke(main, ["status", "--url", url])
    assert status.exit_code == 0, status.output
    assert f"schema version: 0 (code: {CODE_VERSION})" in status.stdout
    for path in PACKAGED_SCRIPTS:
        assert f"  {path.stem}  sha256:{sha256_file(path)[:16]}" in status.stdout
    assert table_names(db) == set()

    dry = runner.invoke(main, ["migrate", "--url", url, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert [line for line in dry.stdout.splitlines() if line.startswith("would apply")] == [
        f"would apply {n}" for n in names
    ]
    assert f"would be at schema version {CODE_VERSION}" in dry.stdout
    assert table_names(db) == set()
    assert user_version(db) == 0

    applied = runner.invoke(main, ["migrate", "--url", url])
    assert applied.exit_code == 0, applied.output
    assert [line for line in applied.stdout.splitlines() if line.startswith("applied")] == [
        f"applied {n}" for n in names
    ]
    assert f"now at schema version {CODE_VERSION}" in applied.stdout
    assert user_version(db) == CODE_VERSION
    assert recorded_migrations(db) == packaged_records()

    again = runner.invoke(main, ["migrate", "--url", url])
    assert again.exit_code == 0, again.output
    assert f"up to date at schema version {CODE_VERSION}" in again.stdout

    status = runner.invoke(main, ["status", "--url", url])
    assert status.exit_code == 0, status.output
    lines = status.stdout.splitlines()
    assert f"schema version: {CODE_VERSION} (code: {CODE_VERSION})" in lines
    applied_lines = lines[lines.index("applied:") + 1 : lines.index("pending:")]
    assert len(applied_lines) == len(PACKAGED_SCRIPTS)
    for line, path in zip(applied_lines, PACKAGED_SCRIPTS, strict=True):
        assert line.startswith(f"  {path.stem}  sha256:{sha256_file(path)[:16]}  ")
        assert "EDITED" not in line
    assert lines[lines.index("pending:") + 1] == "  (none)"
    assert lines[lines.index("drift:") + 1] == "  (none)"


def test_cli_status_of_old_database_shows_unrecorded_versions(tmp_path: Path) -> None:
    db = tmp_path / "v3.db"
    build_historical_db(db, 3)
    result = CliRunner().invoke(main, ["status", "--url", f"sqlite://{db}"])
    assert result.exit_code == 0, result.output
    for version in (1, 2, 3):
        assert f"version {version}: applied before checksums were kept" in result.stdout
    pending = result.stdout.split("pending:")[1].split("drift:")[0]
    assert pending.split() == [
        "0004_conversation_source_name",
        f"sha256:{sha256_file(PACKAGED_SCRIPTS[3])[:16]}",
    ]
    assert user_version(db) == 3
    assert "schema_migrations" not in table_names(db)


@pytest.mark.parametrize("command", [["migrate"], ["migrate", "--dry-run"], ["status"]])
def test_cli_refuses_newer_database(tmp_path: Path, command: list[str]) -> None:
    db = tmp_path / "future.db"
    before = _make_newer_db(db)
    result = CliRunner().invoke(main, [*command, "--url", f"sqlite://{db}"])
    assert result.exit_code == 1
    assert f"Unsupported DB schema version 9 (expected {CODE_VERSION})" in result.stderr
    assert "Unsupported" not in result.stdout
    _assert_untouched(db, before)
