"""All checks of ``polylogue sql check`` for a set of dialects, in one list of findings.

The CLI and the tests call :func:`run_checks`; each check stays usable on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from polylogue.errors import MigrationError
from polylogue.sqlcheck.contract import check_contract
from polylogue.sqlcheck.findings import Finding
from polylogue.sqlcheck.migrations import check_migrations
from polylogue.sqlcheck.parity import LogicalSchema, check_migration_numbers, check_parity
from polylogue.sqlcheck.schema import inspect_schema
from polylogue.storage.sqlfiles import resource_dir

DIALECTS = ("sqlite", "postgresql", "duckdb")

LintMigrations = Callable[[str, Path], list[Finding]]


def _migration_lint() -> LintMigrations | None:
    """The migration lint rules (``polylogue.sqlcheck.lint``), once that module exists."""
    try:
        from polylogue.sqlcheck.lint import lint_migrations
    except ModuleNotFoundError as missing:
        if missing.name != "polylogue.sqlcheck.lint":
            raise
        return None
    return lint_migrations


def run_checks(
    dialects: Sequence[str] = DIALECTS,
    url: str | None = None,
    sql_dir: Path | None = None,
    migrations_dir: Path | None = None,
) -> list[Finding]:
    """Contract, schema, migrations and lint findings of each dialect, then parity.

    ``sql_dir`` and ``migrations_dir`` hold one folder per dialect (default: the
    package's ``sql/`` and ``migrations/``).
    """
    sql_root = sql_dir or resource_dir("sql", "sqlite").parent
    migrations_root = migrations_dir or resource_dir("migrations", "sqlite").parent
    lint = _migration_lint()
    findings: list[Finding] = []
    schemas: dict[str, LogicalSchema] = {}
    for dialect in dialects:
        findings += check_contract(dialect, sql_root)
        found, schema = inspect_schema(dialect, sql_root, migrations_root, url)
        findings += found
        if schema is not None:
            schemas[dialect] = schema
        findings += check_migrations(dialect, migrations_root / dialect)
        if lint is not None:
            try:
                findings += lint(dialect, migrations_root / dialect)
            except MigrationError as exc:  # bad names or gaps, which check_migrations names
                findings.append(
                    Finding(
                        check="lint",
                        severity="not-checked",
                        message=f"migration lint rules not run: {exc}",
                        dialect=dialect,
                    )
                )
    findings += check_parity(schemas)
    findings += check_migration_numbers({d: migrations_root / d for d in dialects})
    return findings


__all__ = ["DIALECTS", "run_checks"]
