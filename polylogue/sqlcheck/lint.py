"""Migration safety lint: operations that lock, fail or lose data on a big real database.

A new script under ``migrations/<dialect>/`` passes its tests on a small test database;
what goes wrong is what only real data shows (a duplicate that a new UNIQUE index meets,
rows that a NOT NULL column cannot fill, a table locked for the minutes an index build
takes). In the spirit of Squawk's and Atlas's analyzers, :func:`lint_migrations` reads each
script statement by statement and reports these as :class:`~polylogue.sqlcheck.findings.Finding`
objects (``check="lint"``, ``severity="error"``, ``name`` the rule id, ``line`` the first line
of the offending statement's code).

Rules (:data:`RULES` holds each reason, for the README):

=================================== ============ ===============================================
rule id                             dialects     why
=================================== ============ ===============================================
add-not-null-without-default        all          ADD COLUMN ... NOT NULL without DEFAULT (or
                                                 GENERATED) fails on a table that has rows
unique-index-on-existing-table      all          CREATE UNIQUE INDEX (or ADD UNIQUE / PRIMARY
                                                 KEY) fails if real data holds duplicates
drop-table                          all          destroys the rows (also CREATE OR REPLACE
                                                 TABLE over an existing table)
drop-column                         all          destroys the column's data
change-column-type                  all          ALTER COLUMN ... TYPE / SET DATA TYPE rewrites
                                                 the table and fails on values that do not cast
index-without-concurrently          postgresql   CREATE INDEX without CONCURRENTLY blocks
                                                 writes to the table for the whole build
concurrently-in-transaction         postgresql   CONCURRENTLY cannot run in a transaction: the
                                                 script needs ``-- polylogue: no-transaction``
rebuild-without-foreign-key-check   sqlite       a table rebuild runs with foreign keys off;
                                                 satisfied by the runner's own check (below)
duckdb-unsupported                  duckdb       ON DELETE/UPDATE CASCADE, SET NULL, SET
                                                 DEFAULT, TRUNCATE ... CASCADE, savepoints
silence-without-reason              all          a silence must say why the statement is safe
bad-silence                         all          a silence names no rule, or no statement
=================================== ============ ===============================================

The first five rules, and the PostgreSQL index rule, concern *existing* tables only: a
table the script did not create itself. A table created (or renamed from one created)
earlier in the same script is new and empty, so adding a NOT NULL column to it or
indexing it is safe. Every other table the script names was created by an earlier
migration (or by the runner, ``schema_migrations``); one that exists nowhere would make the
script fail anyway, so the lint does not replay the history to tell the two apart.

Silencing. A statement that is safe for a reason the lint cannot see is silenced by a
comment in the comment lines directly above it (no blank line between), one rule per line::

    -- polylogue-lint: allow drop-table rebuilt: every row was copied into runs above
    DROP TABLE runs_v2;

The reason is required: without one the silence silences nothing and is reported
(``silence-without-reason``), as is a silence naming an unknown rule or standing where no
statement follows it (``bad-silence``). The prefix is ``polylogue-lint:``, not
``polylogue:``: the runner reads ``-- polylogue:`` comments before a script's first
statement as header directives and refuses unknown ones, so a ``-- polylogue: allow``
above the first statement would stop the migration.

What is not linted, and why:

- a dialect's first script (``0001_initial.sql``, or the ``NNNN_baseline.sql`` that starts
  PostgreSQL's and DuckDB's history) and any baseline: they run on an empty database only,
  where every table is new;
- :data:`SHIPPED_BEFORE_LINT`: SQLite's 0002-0004, applied to users' archives before this
  lint existed. Their DROP TABLEs end table rebuilds whose rows were copied first (the
  ``tests/test_migrations_sqlite.py`` suite checks the data survives). Adding silences
  would edit applied scripts, and any edit, even of a comment, changes the file's sha256
  that ``schema_migrations`` holds: every archive would report drift until the script
  carried ``-- polylogue: replaces sha256:<old>`` lines, a cost with no effect on any
  database.

``rebuild-without-foreign-key-check``: SQLite rebuilds a table (create the new one, copy
the rows, drop the old one, rename) with foreign keys off, which the runner turns off for
the whole migration; rows left pointing at nothing are found only by ``foreign_key_check``.
The runner runs that check itself before committing every SQLite script (the
``foreign_key_check`` query of :data:`polylogue.storage.migrate._RESULT_CHECKS`, which the
SQLite backend declares) and fails the migration on any row it returns. The rule is
therefore satisfied by the runner while the SQLite backend declares that query; it fires
only if it stops doing so, or for a script the runner would not check (no-transaction),
and then a ``PRAGMA foreign_key_check`` after the DROP TABLE satisfies it (note the runner
discards what a script's statements return: that pragma shows problems to a DBA running
the script by hand, it does not fail a migration).

``duckdb-unsupported`` reports what DuckDB refuses (checked on DuckDB 2.0.1): referential
actions (``FOREIGN KEY constraints cannot use CASCADE, SET NULL or SET DEFAULT``),
``TRUNCATE ... CASCADE`` (not implemented) and savepoints (a syntax error). ``DROP ...
CASCADE`` is accepted, so it is not reported.

The statements are split as the runner splits them
(:func:`~polylogue.storage.migration_scripts.iter_statements`) and matched with regular
expressions over their text with comments and string literals taken out: neither
sqlparse nor sqlglot is a dependency, and the handful of statement shapes these rules need
do not justify one.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from polylogue.sqlcheck.findings import Finding
from polylogue.storage.migration_scripts import (
    NO_TRANSACTION_MARKER,
    MigrationScript,
    discover,
    is_baseline,
    iter_statements,
)

SILENCE_PREFIX = "-- polylogue-lint: allow"

RULES: dict[str, str] = {
    "add-not-null-without-default": (
        "ADD COLUMN ... NOT NULL without DEFAULT fails on an existing table that has rows:"
        " give it a DEFAULT, or add it nullable, fill it, then constrain it"
    ),
    "unique-index-on-existing-table": (
        "a UNIQUE index or constraint on an existing table fails if real data holds"
        " duplicates, which test databases rarely do: remove them first in the same script"
    ),
    "drop-table": (
        "dropping an existing table destroys its rows: say where they went (a rebuild"
        " copied them) or why they are not needed"
    ),
    "drop-column": "dropping a column of an existing table destroys its data",
    "change-column-type": (
        "changing a column's type rewrites the table under an exclusive lock and fails on"
        " any value that does not convert"
    ),
    "index-without-concurrently": (
        "An index built on an existing table blocks writes to it for the whole build: use"
        " CREATE INDEX CONCURRENTLY IF NOT EXISTS in a no-transaction script"
    ),
    "concurrently-in-transaction": (
        "CONCURRENTLY cannot run inside a transaction block: make"
        f" '{NO_TRANSACTION_MARKER}' the script's first line"
    ),
    "rebuild-without-foreign-key-check": (
        "a table rebuild runs with foreign keys off, so only foreign_key_check finds rows it"
        " left pointing at nothing; satisfied by the runner, which runs that check before"
        " committing each SQLite script, else by PRAGMA foreign_key_check after the DROP"
    ),
    "duckdb-unsupported": (
        "DuckDB refuses foreign keys with CASCADE, SET NULL or SET DEFAULT actions,"
        " TRUNCATE ... CASCADE and savepoints"
    ),
    "silence-without-reason": (
        "a silence must say why the statement is safe; without a reason it silences nothing"
    ),
    "bad-silence": (
        "a silence must name a rule of this lint and stand directly above a statement;"
        " otherwise it silences nothing"
    ),
}
"""Rule id -> why the rule exists (one line each)."""

RULE_DIALECTS: dict[str, frozenset[str]] = {
    "index-without-concurrently": frozenset({"postgresql"}),
    "concurrently-in-transaction": frozenset({"postgresql"}),
    "rebuild-without-foreign-key-check": frozenset({"sqlite"}),
    "duckdb-unsupported": frozenset({"duckdb"}),
}
"""The rules that apply to some dialects only; every other rule applies to all."""

_SILENCE_RULES = frozenset({"silence-without-reason", "bad-silence"})
"""The rules about silences themselves, which cannot be silenced."""

SHIPPED_BEFORE_LINT: frozenset[tuple[str, str]] = frozenset(
    {
        ("sqlite", "0002_attachment_refs"),
        ("sqlite", "0003_runs_primary_key"),
        ("sqlite", "0004_conversation_source_name"),
    }
)
"""(dialect, script name) of scripts applied to archives before the lint existed; not
linted, because silencing them would change their checksums (see the module docstring)."""

# -- statement shapes -----------------------------------------------------------------
# Matched against normalised text: no comments, string literals as '', whitespace single.

_IDENT = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = rf"{_IDENT}(?:\s?\.\s?{_IDENT})*"
_FLAGS = re.IGNORECASE

_CREATE_TABLE = re.compile(
    rf"CREATE (?P<replace>OR REPLACE )?(?:(?:GLOBAL|LOCAL) )?(?:TEMP |TEMPORARY |UNLOGGED )?"
    rf"TABLE (?:IF NOT EXISTS )?(?P<table>{_NAME})",
    _FLAGS,
)
_RENAME_TABLE = re.compile(
    rf"ALTER[ ]TABLE[ ](?:IF EXISTS )?(?:ONLY )?(?P<table>{_NAME})"
    rf" RENAME TO (?P<new>{_NAME})\s?;?$",
    _FLAGS,
)
_ALTER_TABLE = re.compile(
    rf"ALTER[ ]TABLE[ ](?:IF EXISTS )?(?:ONLY )?(?P<table>{_NAME}) (?P<actions>.*?)\s?;?$", _FLAGS
)
_DROP_TABLE = re.compile(
    rf"DROP[ ]TABLE[ ](?:IF EXISTS )?(?P<tables>{_NAME}(?:\s?,\s?{_NAME})*)", _FLAGS
)
_CREATE_INDEX = re.compile(
    rf"CREATE (?P<unique>UNIQUE )?INDEX (?P<concurrently>CONCURRENTLY )?(?:IF NOT EXISTS )?"
    rf"(?:{_NAME} )?ON (?:ONLY )?(?P<table>{_NAME})",
    _FLAGS,
)
_ADD_COLUMN = re.compile(
    rf"ADD (?!CONSTRAINT\b|PRIMARY\b|UNIQUE\b|FOREIGN\b|CHECK\b|EXCLUDE\b)(?:COLUMN )?"
    rf"(?:IF NOT EXISTS )?(?P<column>{_IDENT})(?P<definition>.*)",
    _FLAGS,
)
_ADD_UNIQUE = re.compile(
    rf"ADD (?:CONSTRAINT {_IDENT} )?(?:UNIQUE|PRIMARY KEY)\b(?!.*\bUSING INDEX\b)", _FLAGS
)
_DROP_COLUMN = re.compile(
    rf"DROP (?!CONSTRAINT\b|PRIMARY\b|FOREIGN\b|DEFAULT\b|NOT\b)(?:COLUMN )?(?:IF EXISTS )?"
    rf"(?P<column>{_IDENT})",
    _FLAGS,
)
_CHANGE_TYPE = re.compile(rf"ALTER (?:COLUMN )?(?P<column>{_IDENT}) (?:SET DATA )?TYPE\b", _FLAGS)
_NOT_NULL = re.compile(r"\bNOT NULL\b", _FLAGS)
_HAS_VALUE = re.compile(r"\b(?:DEFAULT|GENERATED)\b", _FLAGS)
_CONCURRENTLY = re.compile(r"\bCONCURRENTLY\b", _FLAGS)
# REFRESH MATERIALIZED VIEW CONCURRENTLY is the one CONCURRENTLY allowed in a transaction.
_REFRESH = re.compile(r"REFRESH MATERIALIZED VIEW\b", _FLAGS)
_FOREIGN_KEY_CHECK = re.compile(
    rf"(?:^PRAGMA (?:{_IDENT}\s?\.\s?)?foreign_key_check\b|\bpragma_foreign_key_check\b)", _FLAGS
)
_DUCKDB_REFUSED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\bON (?:DELETE|UPDATE) (?:CASCADE|SET NULL|SET DEFAULT)\b", _FLAGS),
        "a foreign key action (CASCADE, SET NULL, SET DEFAULT)",
    ),
    (re.compile(r"^TRUNCATE\b.*\bCASCADE\b", _FLAGS), "a cascading TRUNCATE"),
    (
        re.compile(r"(?:\bSAVEPOINT\b|^RELEASE\b|^ROLLBACK (?:WORK |TRANSACTION )?TO\b)", _FLAGS),
        "a savepoint",
    ),
)
_SILENCE = re.compile(r"--\s*polylogue-lint:\s*allow\b(?P<rest>.*)", _FLAGS)
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class _Silence:
    line: int
    rule: str
    reason: str


@dataclass
class _Statement:
    """One statement of a script: where its code starts and what it says."""

    line: int
    text: str
    """Normalised: comments out, strings as '', whitespace collapsed."""
    silences: list[_Silence] = field(default_factory=list)


@dataclass
class _Hit:
    statement: _Statement
    rule: str
    message: str


def lint_migrations(
    dialect: str,
    folder: Path | None = None,
    *,
    runner_checks_foreign_keys: bool | None = None,
) -> list[Finding]:
    """Lint the migration scripts of ``dialect`` in ``folder`` (None: the packaged ones).

    ``runner_checks_foreign_keys`` says whether the runner runs ``foreign_key_check``
    before committing each script; None asks the SQLite backend (whether it declares that
    query). Raises :class:`~polylogue.errors.MigrationError` where
    :func:`~polylogue.storage.migration_scripts.discover` refuses the folder (bad names,
    gaps, unknown header directives): the ``migrations`` check reports those.
    """
    scripts = discover(dialect, folder)
    if runner_checks_foreign_keys is None:
        runner_checks_foreign_keys = _runner_checks_foreign_keys(dialect)
    findings: list[Finding] = []
    for script in scripts:
        if script is scripts[0] or is_baseline(script):
            continue
        if (dialect, script.name) in SHIPPED_BEFORE_LINT:
            continue
        findings.extend(_lint_script(dialect, script, runner_checks_foreign_keys))
    return findings


def _lint_script(dialect: str, script: MigrationScript, runner_checks: bool) -> list[Finding]:
    statements = list(_statements(dialect, script.sql))
    hits = [
        hit for hit in _rule_hits(script, statements, runner_checks) if _applies(hit.rule, dialect)
    ]
    findings = [
        _finding(dialect, script, hit.statement.line, hit.rule, hit.message)
        for hit in hits
        if not any(s.rule == hit.rule and s.reason for s in hit.statement.silences)
    ]
    findings.extend(_silence_problems(dialect, script, statements))
    return sorted(findings, key=lambda f: (f.line or 0, f.name or ""))


def _applies(rule: str, dialect: str) -> bool:
    return dialect in RULE_DIALECTS.get(rule, frozenset({dialect}))


def _rule_hits(
    script: MigrationScript, statements: list[_Statement], runner_checks: bool
) -> Iterator[_Hit]:
    """Every rule that fires (in any dialect), statement by statement, following which
    tables are new."""
    new: set[str] = set()  # created by this script, under their current names
    renamed_from: dict[str, str] = {}  # existing tables renamed here: name -> name at start
    dropped: list[tuple[int, str]] = []  # existing tables dropped: (statement, name at start)
    fk_checks: list[int] = []  # statements that run foreign_key_check
    for index, statement in enumerate(statements):
        text = statement.text
        if created := _CREATE_TABLE.match(text):
            table = _table_name(created["table"])
            if created["replace"] and table not in new:
                yield _Hit(
                    statement,
                    "drop-table",
                    f"CREATE OR REPLACE TABLE {table} drops the existing table and its rows",
                )
                dropped.append((index, renamed_from.pop(table, table)))
            new.add(table)
        elif renamed := _RENAME_TABLE.match(text):
            old, moved = _table_name(renamed["table"]), _table_name(renamed["new"])
            if old in new:
                new.discard(old)
                new.add(moved)
            else:
                renamed_from[moved] = renamed_from.pop(old, old)
        elif altered := _ALTER_TABLE.match(text):
            yield from _alter_hits(
                statement, _table_name(altered["table"]), altered["actions"], new
            )
        elif dropping := _DROP_TABLE.match(text):
            for raw in _split_top_level(dropping["tables"]):
                table = _table_name(raw)
                if table in new:
                    new.discard(table)
                    continue
                yield _Hit(statement, "drop-table", f"drops table {table}")
                dropped.append((index, renamed_from.pop(table, table)))
        elif index_made := _CREATE_INDEX.match(text):
            yield from _index_hits(statement, index_made, new)
        if _FOREIGN_KEY_CHECK.search(text):
            fk_checks.append(index)
        if _CONCURRENTLY.search(text) and not _REFRESH.match(text) and not script.no_transaction:
            yield _Hit(
                statement,
                "concurrently-in-transaction",
                "CONCURRENTLY in a script that runs in a transaction",
            )
        for pattern, construct in _DUCKDB_REFUSED:
            if pattern.search(text):
                yield _Hit(statement, "duckdb-unsupported", f"DuckDB refuses {construct}")
    checked_by_runner = runner_checks and not script.no_transaction
    for index, table in dropped:
        rebuilt = table in new  # a table this script created now holds the dropped one's name
        if rebuilt and not checked_by_runner and not any(i > index for i in fk_checks):
            yield _Hit(
                statements[index],
                "rebuild-without-foreign-key-check",
                f"this DROP TABLE is part of a rebuild of {table}, and neither the runner nor the"
                " script runs foreign_key_check after it",
            )


def _alter_hits(statement: _Statement, table: str, actions: str, new: set[str]) -> Iterator[_Hit]:
    if table in new:
        return
    for action in _split_top_level(actions):
        if added := _ADD_COLUMN.match(action):
            definition = _depth_zero(added["definition"])
            if _NOT_NULL.search(definition) and not _HAS_VALUE.search(definition):
                yield _Hit(
                    statement,
                    "add-not-null-without-default",
                    f"column {_table_name(added['column'])} of existing table {table} is NOT"
                    " NULL without a DEFAULT",
                )
        elif _ADD_UNIQUE.match(action):
            yield _Hit(
                statement,
                "unique-index-on-existing-table",
                f"a UNIQUE or PRIMARY KEY constraint on existing table {table}",
            )
        elif dropped := _DROP_COLUMN.match(action):
            yield _Hit(
                statement,
                "drop-column",
                f"DROP COLUMN {_table_name(dropped['column'])} of existing table {table}",
            )
        elif changed := _CHANGE_TYPE.match(action):
            yield _Hit(
                statement,
                "change-column-type",
                f"column {_table_name(changed['column'])} of existing table {table} changes type",
            )


def _index_hits(statement: _Statement, match: re.Match[str], new: set[str]) -> Iterator[_Hit]:
    table = _table_name(match["table"])
    if table in new:
        return
    if match["unique"]:
        yield _Hit(
            statement, "unique-index-on-existing-table", f"UNIQUE index on existing table {table}"
        )
    if not match["concurrently"]:
        yield _Hit(
            statement,
            "index-without-concurrently",
            f"an index on existing table {table}, built without CONCURRENTLY",
        )


# -- silences -------------------------------------------------------------------------


def _attach_silences(lines: list[str], statement: _Statement) -> None:
    """The silences among the comment lines directly above the statement's first line."""
    number = statement.line - 1
    while number >= 1 and lines[number - 1].strip().startswith("--"):
        if silence := _parse_silence(lines[number - 1], number):
            statement.silences.append(silence)
        number -= 1


def _parse_silence(line: str, number: int) -> _Silence | None:
    match = _SILENCE.match(line.strip())
    if match is None:
        return None
    rule, _, reason = match["rest"].strip().partition(" ")
    return _Silence(number, rule, reason.strip())


def _silence_problems(
    dialect: str, script: MigrationScript, statements: list[_Statement]
) -> Iterator[Finding]:
    attached = {s.line for statement in statements for s in statement.silences}
    for number, line in enumerate(script.sql.splitlines(), start=1):
        silence = _parse_silence(line, number)
        if silence is None:
            continue
        if number not in attached:
            yield _finding(
                dialect,
                script,
                number,
                "bad-silence",
                "this silence is not in the comment lines directly above a statement, so it"
                " silences nothing: move it there",
            )
        elif silence.rule not in RULES or silence.rule in _SILENCE_RULES:
            known = ", ".join(
                rule for rule in RULES if _applies(rule, dialect) and rule not in _SILENCE_RULES
            )
            named = f"unknown rule {silence.rule!r}" if silence.rule else "no rule named"
            yield _finding(
                dialect,
                script,
                number,
                "bad-silence",
                f"{named}, so it silences nothing; write it as '{SILENCE_PREFIX} <rule-id>"
                f" <why the statement is safe>' with one of: {known}",
            )
        elif not silence.reason:
            yield _finding(
                dialect,
                script,
                number,
                "silence-without-reason",
                f"the silence of {silence.rule} gives no reason, so it silences nothing; write"
                f" it as '{SILENCE_PREFIX} {silence.rule} <why the statement is safe>'",
            )


# -- reading statements ---------------------------------------------------------------


def _statements(dialect: str, sql: str) -> Iterator[_Statement]:
    """The script's statements as the runner splits them, each with the line its code
    starts on and the silences above it."""
    is_complete = _statement_complete(dialect)
    lines = sql.splitlines()
    cursor = 0
    for raw in iter_statements(sql, is_complete):
        # iter_statements yields consecutive slices of the script (the last one with a
        # ';' added when the script does not end with one), so each is found in order.
        start = sql.find(raw, cursor)
        if start < 0:
            start = sql.find(raw[:-1], cursor)
        text, first_code = _normalise(raw, nested_comments=dialect != "sqlite")
        cursor = max(start, cursor) + len(raw) - 1
        if first_code < 0 or start < 0:
            continue
        statement = _Statement(line=sql.count("\n", 0, start + first_code) + 1, text=text)
        _attach_silences(lines, statement)
        yield statement


def _statement_complete(dialect: str) -> Callable[[str], bool]:
    if dialect == "sqlite":
        return sqlite3.complete_statement
    # Imported here: the backends package loads every backend module.
    from polylogue.storage.backends.postgresql.migrate import statement_complete

    return statement_complete


def _normalise(text: str, *, nested_comments: bool) -> tuple[str, int]:
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


def _split_top_level(text: str) -> list[str]:
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


def _depth_zero(text: str) -> str:
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


def _table_name(raw: str) -> str:
    """The unqualified, unquoted, lower-case name (``main."Runs"`` -> ``runs``)."""
    last = re.split(rf"\s?\.\s?(?={_IDENT}$)", raw.strip())[-1]
    if last[:1] in ('"', "`", "["):
        last = last[1:-1].replace('""', '"')
    return last.lower()


# -- findings -------------------------------------------------------------------------


def _finding(dialect: str, script: MigrationScript, line: int, rule: str, message: str) -> Finding:
    if rule not in _SILENCE_RULES:
        message = (
            f"{message}: {RULES[rule]}; if it is safe here, say why in the line above it:"
            f" '{SILENCE_PREFIX} {rule} <reason>'"
        )
    return Finding(
        check="lint",
        severity="error",
        message=message,
        dialect=dialect,
        file=_display_path(script.path),
        line=line,
        name=rule,
    )


def _display_path(path: Path) -> str:
    """Relative to the repository when the script lies in the checkout, else absolute."""
    root = Path(str(resources.files("polylogue"))).parent.resolve()
    resolved = path.resolve()
    if (root / "pyproject.toml").is_file() and resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    return str(resolved)


def _runner_checks_foreign_keys(dialect: str) -> bool:
    """Whether the runner checks foreign keys before committing each script of ``dialect``:
    it does where the backend declares ``foreign_key_check`` (SQLite's does)."""
    if dialect != "sqlite":
        return False  # the rule needing this is SQLite's
    from polylogue.storage.backends.sqlite.backend import SQLiteBackend

    return "foreign_key_check" in SQLiteBackend.dialect_queries


__all__ = [
    "RULES",
    "RULE_DIALECTS",
    "SHIPPED_BEFORE_LINT",
    "SILENCE_PREFIX",
    "lint_migrations",
]
