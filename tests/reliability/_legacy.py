"""A schema-version-1 SQLite archive with enough rows that migrating it takes a while.

Built with the historical DDL of ``tests/test_migrations_sqlite.py`` and seeded random
rows: conversations, messages, one attachments row per reference with ids shared across
conversations (as version 1 stored them), references to messages that are gone, and runs
with missing and repeated ids. Everything the later migrations convert is there.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

from tests.test_migrations_sqlite import HISTORICAL_DDL


def build_v1_archive(
    path: Path, seed: int, *, conversations: int = 600, attachments: int = 400
) -> None:
    rng = random.Random(f"{seed}:v1")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for ddl in HISTORICAL_DDL[1]:
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conversation_rows, message_rows, attachment_rows = [], [], []
        for c in range(conversations):
            cid = f"conv-{c}-ü"
            conversation_rows.append(
                (
                    cid,
                    ("chatgpt", "claude", "gemini")[c % 3],
                    f"p-{c}",
                    None if c % 7 == 0 else f"Title {c} 🌍",
                    "2024-01-01T00:00:00Z",
                    f"2024-02-{1 + c % 28:02d}T00:00:00Z",
                    f"hash-{c}",
                    None if c % 5 == 0 else json.dumps({"source": f"export-{c % 4}", "n": c}),
                    1 + c % 3,
                )
            )
            mids = []
            for i in range(rng.randint(2, 14)):
                mid = f"{cid}:m{i}"
                mids.append(mid)
                text = f"text {i} of {cid} " + "x" * rng.randint(0, 300)
                message_rows.append(
                    (
                        mid,
                        cid,
                        f"pm-{i}",
                        ("user", "assistant")[i % 2],
                        text,
                        f"2024-02-01T00:00:{i:02d}Z",
                        f"mh-{c}-{i}",
                        None,
                        1,
                    )
                )
            for _ in range(rng.choice((0, 1, 2, 3))):
                a = rng.randrange(attachments)
                message_id = rng.choice([None, "m-deleted-long-ago", *mids])
                attachment_rows.append(
                    (
                        f"att-{a}",
                        cid,
                        message_id,
                        ("image/png", None)[a % 2],
                        a * 31,
                        f"/files/{a}",
                        json.dumps({"a": a}) if a % 3 else None,
                    )
                )
        conn.executemany(
            "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", conversation_rows
        )
        conn.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", message_rows)
        conn.executemany("INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?)", attachment_rows)
        conn.executemany(
            'INSERT INTO runs (run_id, timestamp, counts_json, "indexed", duration_ms)'
            " VALUES (?, ?, ?, ?, ?)",
            [
                (
                    None if r % 9 == 0 else f"run-{r % 40}",
                    f"2024-03-01T00:{r // 60 % 60:02d}:00Z",
                    json.dumps({"n": r}),
                    r % 2,
                    r,
                )
                for r in range(120)
            ],
        )
        conn.execute("PRAGMA user_version = 1")
        conn.execute("COMMIT")
    finally:
        conn.close()
