"""What PostgreSQL's migrations need that is not a query: the advisory lock key and the
statement splitter (the runner, :mod:`polylogue.storage.migrate`, does the rest).

PostgreSQL DDL is transactional, so each script runs inside ``BEGIN ... COMMIT`` holding
``pg_advisory_xact_lock(key)``: a failing script leaves nothing behind, and concurrent
migrators of the same schema queue on the lock and apply each script once (the one that
waited re-reads the version and finds the script applied). The key is a constant derived
from the schema name, so archives in different schemas of one database migrate
independently; once it holds the lock, the runner creates the schema if it is missing
(inside the same transaction). The version is the highest one recorded in
``schema_migrations``.

A script whose first line is ``-- polylogue: no-transaction`` (``CREATE INDEX
CONCURRENTLY``, which cannot run inside a transaction) runs statement by statement in
autocommit mode under the session-level ``pg_advisory_lock(key)`` instead, and is recorded
afterwards in a short locked transaction. Statements of such a script that completed
before a failure stay: write them re-runnable (``IF NOT EXISTS``).
"""

from __future__ import annotations

import hashlib
import re

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def migration_lock_key(schema: str) -> int:
    """The advisory lock key (a signed bigint) of migrations of ``schema``."""
    digest = hashlib.sha256(f"polylogue migrations {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def statement_complete(text: str) -> bool:
    """Whether ``text`` ends outside any string, quoted name, comment or dollar quote.

    :func:`~polylogue.storage.migrate.iter_statements` glues the pieces between
    semicolons until this says yes, so that a ``;`` inside a function body or a string
    does not end a statement.
    """
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            if end < 0:
                return False
            i = end + 1
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
        elif char == "'":
            i = _skip_string(text, i)
        elif char == '"':
            end = text.find('"', i + 1)
            i = n + 1 if end < 0 else end + 1
        elif char == "$" and not _continues_word(text, i):
            match = _DOLLAR_TAG.match(text, i)
            if match is None:
                i += 1
                continue
            end = text.find(match.group(0), match.end())
            i = n + 1 if end < 0 else end + len(match.group(0))
        else:
            i += 1
    return i == n


def _continues_word(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def _skip_block_comment(text: str, i: int) -> int:
    depth, i, n = 1, i + 2, len(text)
    while depth:
        if i >= n:
            return n + 1
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _skip_string(text: str, i: int) -> int:
    backslashes = i > 0 and text[i - 1] in "eE" and not _continues_word(text, i - 1)
    i, n = i + 1, len(text)
    while i < n:
        char = text[i]
        if backslashes and char == "\\":
            i += 2
        elif char == "'":
            if text.startswith("''", i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n + 1
