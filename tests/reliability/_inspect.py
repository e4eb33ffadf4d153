"""Reading a database back after a crash: its content, its dumps, and what is broken in it.

Three views, each for its own comparison:

* :func:`observed_state` reads what the public API returns (conversations, messages,
  attachment refs, runs) plus every attachment's stored ``ref_count``: comparable with
  :meth:`tests.reliability._workload.Model.state`;
* :func:`canonical_dump` reads every row of every table with raw SQL, sorted, so two
  databases of the same backend can be compared whole (``schema_migrations.applied_at``,
  the only column that records when rather than what, is left out);
* :func:`integrity_problems` lists what no database may ever hold: a ``ref_count`` other
  than the number of refs, an attachment nobody refers to, a row whose parent row is
  missing, a ref id that is not the documented formula.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from polylogue.storage.backends import SQLBackend
from polylogue.storage.records import make_ref_id
from tests.reliability._workload import State, sorted_dumps

_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    "postgresql": (
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ),
    "duckdb": (
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ),
}

_DANGLING = {
    "message without its conversation": (
        "SELECT m.message_id FROM messages AS m WHERE NOT EXISTS"
        " (SELECT 1 FROM conversations AS c WHERE c.conversation_id = m.conversation_id)"
    ),
    "ref without its conversation": (
        "SELECT r.ref_id FROM attachment_refs AS r WHERE NOT EXISTS"
        " (SELECT 1 FROM conversations AS c WHERE c.conversation_id = r.conversation_id)"
    ),
    "ref without its attachment": (
        "SELECT r.ref_id FROM attachment_refs AS r WHERE NOT EXISTS"
        " (SELECT 1 FROM attachments AS a WHERE a.attachment_id = r.attachment_id)"
    ),
    "ref without its message": (
        "SELECT r.ref_id FROM attachment_refs AS r WHERE r.message_id IS NOT NULL AND NOT"
        " EXISTS (SELECT 1 FROM messages AS m WHERE m.message_id = r.message_id)"
    ),
}

_REF_COUNTS = (
    "SELECT a.attachment_id, a.ref_count,"
    " (SELECT count(*) FROM attachment_refs AS r WHERE r.attachment_id = a.attachment_id)"
    " AS refs FROM attachments AS a"
)

_SCHEMA = {
    "sqlite": ["SELECT type, name, tbl_name, sql FROM sqlite_master"],
    "postgresql": [
        "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
        " column_default, is_generated, generation_expression, collation_name"
        " FROM information_schema.columns WHERE table_schema = current_schema()",
        "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '')"
        " FROM pg_indexes WHERE schemaname = current_schema()",
        "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)"
        " FROM pg_constraint AS con JOIN pg_class AS c ON c.oid = con.conrelid"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()",
    ],
    "duckdb": [
        "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
        " column_default FROM information_schema.columns"
        " WHERE table_schema = current_schema()",
        "SELECT table_name, index_name, sql FROM duckdb_indexes()"
        " WHERE schema_name = current_schema()",
        "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints()"
        " WHERE schema_name = current_schema()",
    ],
}


def raw_rows(backend: SQLBackend, sql: str) -> list[dict[str, Any]]:
    """Every row of one raw query on the backend's own connection, as dicts."""
    with backend._reading("test query") as conn:
        cursor = conn.execute(sql)
        names = [column[0] for column in cursor.description or ()]
        fetched = cursor.fetchall()
    return [
        dict(row) if isinstance(row, dict) else dict(zip(names, row, strict=True))
        for row in fetched
    ]


def table_names(backend: SQLBackend) -> list[str]:
    return sorted(next(iter(row.values())) for row in raw_rows(backend, _TABLES[backend.dialect]))


def _comparable(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _sorted_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


def canonical_dump(backend: SQLBackend, *, with_schema: bool = False) -> dict[str, Any]:
    """Every row of every table, sorted; with ``with_schema`` the catalog's view too."""
    dump: dict[str, Any] = {}
    for table in table_names(backend):
        rows = raw_rows(backend, f'SELECT * FROM "{table}"')
        dump[table] = _sorted_rows(
            [
                tuple(
                    (name, _comparable(value))
                    for name, value in sorted(row.items())
                    if not (table == "schema_migrations" and name == "applied_at")
                )
                for row in rows
            ]
        )
    if with_schema:
        dump["(schema)"] = [
            _sorted_rows([tuple(map(_comparable, row.values())) for row in raw_rows(backend, q)])
            for q in _SCHEMA[backend.dialect]
        ]
    return dump


def observed_state(backend: SQLBackend) -> State:
    """The database's content through the public API (see :meth:`Model.state`)."""
    conversations: dict[str, Any] = {}
    for conversation in backend.list_conversations():
        cid = conversation.conversation_id
        conversations[cid] = {
            "conversation": conversation.model_dump(),
            "messages": sorted_dumps(backend.get_messages(cid), "message_id"),
            "attachments": sorted_dumps(
                backend.get_attachments(cid), "attachment_id", "message_id"
            ),
        }
    ref_counts = {
        str(row["attachment_id"]): int(row["ref_count"])
        for row in raw_rows(backend, "SELECT attachment_id, ref_count FROM attachments")
    }
    return {
        "conversations": conversations,
        "ref_counts": ref_counts,
        "runs": sorted_dumps(backend.get_runs(), "run_id"),
    }


def integrity_problems(backend: SQLBackend) -> list[str]:
    """What is wrong in the database, whatever was written to it (empty when sound)."""
    problems: list[str] = []
    for row in raw_rows(backend, _REF_COUNTS):
        if row["ref_count"] != row["refs"]:
            problems.append(
                f"attachment {row['attachment_id']!r}: ref_count {row['ref_count']},"
                f" {row['refs']} refs"
            )
        if row["refs"] == 0:
            problems.append(f"attachment {row['attachment_id']!r} has no refs")
    for what, sql in _DANGLING.items():
        problems.extend(f"{what}: {next(iter(row.values()))!r}" for row in raw_rows(backend, sql))
    refs = raw_rows(
        backend, "SELECT ref_id, attachment_id, conversation_id, message_id FROM attachment_refs"
    )
    for row in refs:
        expected = make_ref_id(row["attachment_id"], row["conversation_id"], row["message_id"])
        if row["ref_id"] != expected:
            problems.append(f"ref {row['ref_id']!r} should be {expected!r}")
    return problems


def sqlite_file_problems(path: Path) -> list[str]:
    """``integrity_check`` and ``foreign_key_check`` of a SQLite file, on a plain connection."""
    problems = [f"integrity_check: {row}" for row in sqlite_integrity(path) if row != "ok"]
    problems.extend(f"foreign_key_check: {row}" for row in sqlite_foreign_key_check(path))
    return problems


def sqlite_integrity(path: Path) -> list[str]:
    """What ``PRAGMA integrity_check`` says (``["ok"]`` for a sound file)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
    finally:
        conn.close()


def sqlite_foreign_key_check(path: Path) -> list[tuple[Any, ...]]:
    """The rows ``PRAGMA foreign_key_check`` reports (none in a consistent file)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return [tuple(row) for row in conn.execute("PRAGMA foreign_key_check").fetchall()]
    finally:
        conn.close()


def sqlite_file_dump(path: Path) -> dict[str, Any]:
    """A SQLite file whole, on a plain connection: version, schema and every row, sorted."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        dump: dict[str, Any] = {
            "(user_version)": conn.execute("PRAGMA user_version").fetchone()[0],
            "(schema)": _sorted_rows(
                [tuple(r) for r in conn.execute(_SCHEMA["sqlite"][0]).fetchall()]
            ),
        }
        tables = [r[0] for r in conn.execute(_TABLES["sqlite"]).fetchall()]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            names = [column[0] for column in cursor.description]
            keep = [
                i
                for i, name in enumerate(names)
                if not (table == "schema_migrations" and name == "applied_at")
            ]
            dump[table] = _sorted_rows([tuple(row[i] for i in keep) for row in cursor.fetchall()])
    finally:
        conn.close()
    return dump


def explain_mismatch(observed: State, candidates: list[State]) -> str:
    """Where ``observed`` differs from the nearest of ``candidates`` (for failure messages)."""
    lines: list[str] = []
    best = min(candidates, key=lambda c: _distance(observed, c))
    for key in ("ref_counts", "runs"):
        if observed[key] != best[key]:
            lines.append(f"{key}: stored {observed[key]!r}, expected {best[key]!r}")
    stored, expected = observed["conversations"], best["conversations"]
    for cid in sorted(set(stored) | set(expected)):
        got, want = stored.get(cid), expected.get(cid)
        if got == want:
            continue
        if got is None:
            lines.append(f"{cid!r}: missing, though a committed transaction saved it")
            continue
        if want is None:
            lines.append(
                f"{cid!r}: stored, though no committed transaction saved it"
                f" ({len(got['messages'])} messages, {len(got['attachments'])} refs)"
            )
            continue
        parts = [
            part for part in ("conversation", "messages", "attachments") if got[part] != want[part]
        ]
        detail = "; ".join(f"{part}: {_difference(got[part], want[part])}" for part in parts)
        lines.append(f"{cid!r}: {detail}")
    shown = [line if len(line) <= 400 else line[:400] + " ..." for line in lines[:12]]
    return "\n".join(shown) + (f"\n... {len(lines) - 12} more" if len(lines) > 12 else "")


def _distance(observed: State, candidate: State) -> int:
    stored, expected = observed["conversations"], candidate["conversations"]
    keys = set(stored) | set(expected)
    return sum(stored.get(k) != expected.get(k) for k in keys) + (
        observed["ref_counts"] != candidate["ref_counts"]
    )


def _difference(got: Any, want: Any) -> str:
    """What differs between a stored and an expected row (or list of rows), briefly."""
    if isinstance(got, dict):
        keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        return ", ".join(f"{k} stored {got.get(k)!r} expected {want.get(k)!r}" for k in keys)
    unexpected = [_row_id(row) for row in got if row not in want]
    missing = [_row_id(row) for row in want if row not in got]
    return f"rows not expected {unexpected[:6]}, rows missing {missing[:6]}"


def _row_id(row: dict[str, Any]) -> str:
    key = row.get("message_id") if "text" in row else (row["attachment_id"], row["message_id"])
    return f"{key} ({row.get('text') or row.get('content_hash') or ''!r:.40})"
