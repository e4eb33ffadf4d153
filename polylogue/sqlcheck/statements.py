"""A migration script read statement by statement, as the runner splits it: each with
the line its code starts on, its normalised text, and the lint silences above it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from polylogue.sqlcheck.sql_text import normalise, statement_complete
from polylogue.storage.migration_scripts import iter_statements

SILENCE_COMMENT = re.compile(r"--\s*polylogue-lint:\s*allow\b(?P<rest>.*)", re.IGNORECASE)
"""``-- polylogue-lint: allow <rule> <reason>`` (see :mod:`polylogue.sqlcheck.lint`)."""


@dataclass(frozen=True)
class Silence:
    line: int
    rule: str
    reason: str


@dataclass
class Statement:
    """One statement of a script: where its code starts and what it says."""

    line: int
    text: str
    """Normalised: comments out, strings as '', whitespace collapsed."""
    silences: list[Silence] = field(default_factory=list)


def read_statements(dialect: str, sql: str) -> Iterator[Statement]:
    """The script's statements as the runner splits them, each with the line its code
    starts on and the silences above it."""
    is_complete = statement_complete(dialect)
    lines = sql.splitlines()
    cursor = 0
    for raw in iter_statements(sql, is_complete):
        # iter_statements yields consecutive slices of the script (the last one with a
        # ';' added when the script does not end with one), so each is found in order.
        start = sql.find(raw, cursor)
        if start < 0:
            start = sql.find(raw[:-1], cursor)
        text, first_code = normalise(raw, nested_comments=dialect != "sqlite")
        cursor = max(start, cursor) + len(raw) - 1
        if first_code < 0 or start < 0:
            continue
        statement = Statement(line=sql.count("\n", 0, start + first_code) + 1, text=text)
        attach_silences(lines, statement)
        yield statement


def attach_silences(lines: list[str], statement: Statement) -> None:
    """The silences among the comment lines directly above the statement's first line."""
    number = statement.line - 1
    while number >= 1 and lines[number - 1].strip().startswith("--"):
        if silence := parse_silence(lines[number - 1], number):
            statement.silences.append(silence)
        number -= 1


def parse_silence(line: str, number: int) -> Silence | None:
    match = SILENCE_COMMENT.match(line.strip())
    if match is None:
        return None
    rule, _, reason = match["rest"].strip().partition(" ")
    return Silence(number, rule, reason.strip())
