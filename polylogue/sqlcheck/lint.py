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

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from polylogue.sqlcheck.findings import Finding
from polylogue.sqlcheck.rule_hits import rule_hits
from polylogue.sqlcheck.statements import (
    Statement,
    parse_silence,
    read_statements,
)
from polylogue.storage.migration_scripts import (
    NO_TRANSACTION_MARKER,
    MigrationScript,
    discover,
    is_baseline,
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
    statements = list(read_statements(dialect, script.sql))
    hits = [
        hit for hit in rule_hits(script, statements, runner_checks) if _applies(hit.rule, dialect)
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


# -- silences -------------------------------------------------------------------------


def _silence_problems(
    dialect: str, script: MigrationScript, statements: list[Statement]
) -> Iterator[Finding]:
    attached = {s.line for statement in statements for s in statement.silences}
    for number, line in enumerate(script.sql.splitlines(), start=1):
        silence = parse_silence(line, number)
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
