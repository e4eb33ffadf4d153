"""What each lint rule looks for in a statement: the statement shapes, matched against
normalised text (:mod:`polylogue.sqlcheck.sql_text`), and the hits they give.

:mod:`polylogue.sqlcheck.lint` says which rules exist, why, and how they are silenced;
this module only finds candidates, every one named by its rule id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from polylogue.sqlcheck.sql_text import IDENT, depth_zero, split_top_level, table_name
from polylogue.sqlcheck.statements import Statement
from polylogue.storage.migration_scripts import MigrationScript

# -- statement shapes -----------------------------------------------------------------
# Matched against normalised text: no comments, string literals as '', whitespace single.

_NAME = rf"{IDENT}(?:\s?\.\s?{IDENT})*"
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
    rf"(?:IF NOT EXISTS )?(?P<column>{IDENT})(?P<definition>.*)",
    _FLAGS,
)
_ADD_UNIQUE = re.compile(
    rf"ADD (?:CONSTRAINT {IDENT} )?(?:UNIQUE|PRIMARY KEY)\b(?!.*\bUSING INDEX\b)", _FLAGS
)
_DROP_COLUMN = re.compile(
    rf"DROP (?!CONSTRAINT\b|PRIMARY\b|FOREIGN\b|DEFAULT\b|NOT\b)(?:COLUMN )?(?:IF EXISTS )?"
    rf"(?P<column>{IDENT})",
    _FLAGS,
)
_CHANGE_TYPE = re.compile(rf"ALTER (?:COLUMN )?(?P<column>{IDENT}) (?:SET DATA )?TYPE\b", _FLAGS)
_NOT_NULL = re.compile(r"\bNOT NULL\b", _FLAGS)
_HAS_VALUE = re.compile(r"\b(?:DEFAULT|GENERATED)\b", _FLAGS)
_CONCURRENTLY = re.compile(r"\bCONCURRENTLY\b", _FLAGS)
# REFRESH MATERIALIZED VIEW CONCURRENTLY is the one CONCURRENTLY allowed in a transaction.
_REFRESH = re.compile(r"REFRESH MATERIALIZED VIEW\b", _FLAGS)
_FOREIGN_KEY_CHECK = re.compile(
    rf"(?:^PRAGMA (?:{IDENT}\s?\.\s?)?foreign_key_check\b|\bpragma_foreign_key_check\b)", _FLAGS
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


@dataclass
class Hit:
    statement: Statement
    rule: str
    message: str


def rule_hits(
    script: MigrationScript, statements: list[Statement], runner_checks: bool
) -> Iterator[Hit]:
    """Every rule that fires (in any dialect), statement by statement, following which
    tables are new."""
    new: set[str] = set()  # created by this script, under their current names
    renamed_from: dict[str, str] = {}  # existing tables renamed here: name -> name at start
    dropped: list[tuple[int, str]] = []  # existing tables dropped: (statement, name at start)
    fk_checks: list[int] = []  # statements that run foreign_key_check
    for index, statement in enumerate(statements):
        text = statement.text
        if created := _CREATE_TABLE.match(text):
            table = table_name(created["table"])
            if created["replace"] and table not in new:
                yield Hit(
                    statement,
                    "drop-table",
                    f"CREATE OR REPLACE TABLE {table} drops the existing table and its rows",
                )
                dropped.append((index, renamed_from.pop(table, table)))
            new.add(table)
        elif renamed := _RENAME_TABLE.match(text):
            old, moved = table_name(renamed["table"]), table_name(renamed["new"])
            if old in new:
                new.discard(old)
                new.add(moved)
            else:
                renamed_from[moved] = renamed_from.pop(old, old)
        elif altered := _ALTER_TABLE.match(text):
            yield from _alter_hits(statement, table_name(altered["table"]), altered["actions"], new)
        elif dropping := _DROP_TABLE.match(text):
            for raw in split_top_level(dropping["tables"]):
                table = table_name(raw)
                if table in new:
                    new.discard(table)
                    continue
                yield Hit(statement, "drop-table", f"drops table {table}")
                dropped.append((index, renamed_from.pop(table, table)))
        elif index_made := _CREATE_INDEX.match(text):
            yield from _index_hits(statement, index_made, new)
        if _FOREIGN_KEY_CHECK.search(text):
            fk_checks.append(index)
        if _CONCURRENTLY.search(text) and not _REFRESH.match(text) and not script.no_transaction:
            yield Hit(
                statement,
                "concurrently-in-transaction",
                "CONCURRENTLY in a script that runs in a transaction",
            )
        for pattern, construct in _DUCKDB_REFUSED:
            if pattern.search(text):
                yield Hit(statement, "duckdb-unsupported", f"DuckDB refuses {construct}")
    checked_by_runner = runner_checks and not script.no_transaction
    for index, table in dropped:
        rebuilt = table in new  # a table this script created now holds the dropped one's name
        if rebuilt and not checked_by_runner and not any(i > index for i in fk_checks):
            yield Hit(
                statements[index],
                "rebuild-without-foreign-key-check",
                f"this DROP TABLE is part of a rebuild of {table}, and neither the runner nor the"
                " script runs foreign_key_check after it",
            )


def _alter_hits(statement: Statement, table: str, actions: str, new: set[str]) -> Iterator[Hit]:
    if table in new:
        return
    for action in split_top_level(actions):
        if added := _ADD_COLUMN.match(action):
            definition = depth_zero(added["definition"])
            if _NOT_NULL.search(definition) and not _HAS_VALUE.search(definition):
                yield Hit(
                    statement,
                    "add-not-null-without-default",
                    f"column {table_name(added['column'])} of existing table {table} is NOT"
                    " NULL without a DEFAULT",
                )
        elif _ADD_UNIQUE.match(action):
            yield Hit(
                statement,
                "unique-index-on-existing-table",
                f"a UNIQUE or PRIMARY KEY constraint on existing table {table}",
            )
        elif dropped := _DROP_COLUMN.match(action):
            yield Hit(
                statement,
                "drop-column",
                f"DROP COLUMN {table_name(dropped['column'])} of existing table {table}",
            )
        elif changed := _CHANGE_TYPE.match(action):
            yield Hit(
                statement,
                "change-column-type",
                f"column {table_name(changed['column'])} of existing table {table} changes type",
            )


def _index_hits(statement: Statement, match: re.Match[str], new: set[str]) -> Iterator[Hit]:
    table = table_name(match["table"])
    if table in new:
        return
    if match["unique"]:
        yield Hit(
            statement, "unique-index-on-existing-table", f"UNIQUE index on existing table {table}"
        )
    if not match["concurrently"]:
        yield Hit(
            statement,
            "index-without-concurrently",
            f"an index on existing table {table}, built without CONCURRENTLY",
        )
