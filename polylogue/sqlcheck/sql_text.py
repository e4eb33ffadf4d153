"""Statement text for the migration lint: comments out, strings blanked, whitespace
collapsed, and the few shapes the rules need split apart.

Kept apart from :mod:`polylogue.sqlcheck.lint` so that the rules read as rules; none of
this runs a statement or knows a rule.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

IDENT = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_$]*)'
"""One identifier: bare, or quoted as SQL, MySQL or SQL Server quote it."""

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def statement_complete(dialect: str) -> Callable[[str], bool]:
    if dialect == "sqlite":
        return sqlite3.complete_statement
    # Imported here: the backends package loads every backend module.
    from polylogue.storage.backends.postgresql.migrate import statement_complete

    return statement_complete


def normalise(text: str, *, nested_comments: bool) -> tuple[str, int]:
    """``text`` without comments, with every string literal as ``''`` and whitespace
    collapsed; and the offset of its first character of code (-1: none)."""
    out: list[str] = []
    first = -1
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            out.append(" ")
            continue
        if text.startswith("/*", i):
            i = _block_comment_end(text, i, nested=nested_comments)
            out.append(" ")
            continue
        if first < 0 and not char.isspace():
            first = i
        dollar = _DOLLAR_TAG.match(text, i) if char == "$" and not _in_word(text, i) else None
        if char == "'":
            i = _string_end(text, i)
            out.append("''")
        elif dollar:
            end = text.find(dollar.group(0), dollar.end())
            i = n if end < 0 else end + len(dollar.group(0))
            out.append("''")
        elif char == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end + 1
            out.append(text[i:end])
            i = end
        else:
            out.append(char)
            i += 1
    return " ".join("".join(out).split()), first


def _in_word(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def _block_comment_end(text: str, i: int, *, nested: bool) -> int:
    depth, i, n = 1, i + 2, len(text)
    while depth and i < n:
        if nested and text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return i


def _string_end(text: str, i: int) -> int:
    # E'...' (PostgreSQL) escapes with backslashes; every dialect doubles a quote.
    backslashes = i > 0 and text[i - 1] in "eE" and not _in_word(text, i - 1)
    i, n = i + 1, len(text)
    while i < n:
        if (backslashes and text[i] == "\\") or text.startswith("''", i):
            i += 2
        elif text[i] == "'":
            return i + 1
        else:
            i += 1
    return n


def split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses and quoted names."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def depth_zero(text: str) -> str:
    """``text`` without what is inside parentheses (a CHECK's NOT NULL is not the column's)."""
    out: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(char)
    return "".join(out)


def table_name(raw: str) -> str:
    """The unqualified, unquoted, lower-case name (``main."Runs"`` -> ``runs``)."""
    last = re.split(rf"\s?\.\s?(?={IDENT}$)", raw.strip())[-1]
    if last[:1] in ('"', "`", "["):
        last = last[1:-1].replace('""', '"')
    return last.lower()
