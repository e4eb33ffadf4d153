"""The contract check: each dialect's query files define what the binding calls.

The loader refuses a query set that does not match when a backend opens
(:func:`polylogue.storage.sqlfiles.query_set_problems` finds the problems for both); this
reports the same problems as findings, for a folder being edited, without a database. A
query the binding does not use is a warning here, not an error.
"""

from __future__ import annotations

from pathlib import Path

from polylogue.sqlcheck.findings import Finding
from polylogue.storage.sqlfiles import QuerySpec, query_set_problems, resource_dir


def backend_class(dialect: str) -> type:
    """The backend class of ``dialect`` (imported here: PostgreSQL's needs psycopg)."""
    if dialect == "sqlite":
        from polylogue.storage.backends.sqlite.backend import SQLiteBackend

        return SQLiteBackend
    if dialect == "duckdb":
        from polylogue.storage.backends.duckdb.backend import DuckDBBackend

        return DuckDBBackend
    if dialect == "postgresql":
        from polylogue.storage.backends.postgresql.backend import PostgresBackend

        return PostgresBackend
    raise ValueError(f"unknown dialect {dialect!r}: use sqlite, postgresql or duckdb")


def expected_queries(dialect: str) -> dict[str, QuerySpec]:
    """The queries ``sql/<dialect>/`` must define (``SQLBackend.expected_queries()``)."""
    spec: dict[str, QuerySpec] = backend_class(dialect).expected_queries()  # type: ignore[attr-defined]
    return spec


def repository_root() -> Path:
    """Where ``sql/`` and ``migrations/`` sit (the checkout, or the installed package)."""
    return resource_dir("sql", "sqlite").parent.parent


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (``sql/sqlite/runs.sql``)."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(repository_root().resolve()))
    except ValueError:
        return str(path)


def check_contract(dialect: str, sql_dir: Path) -> list[Finding]:
    """Findings for every query of ``sql_dir/<dialect>`` (or ``sql_dir`` itself when it
    is the dialect's folder) that differs from what the binding calls."""
    folder = sql_dir / dialect if (sql_dir / dialect).is_dir() else sql_dir
    findings = []
    for problem in query_set_problems(folder, expected_queries(dialect)):
        line = problem.line
        if line is None and problem.path.is_file():
            line = 1  # a missing query: point at the file it belongs in
        findings.append(
            Finding(
                check="contract",
                severity=problem.severity,
                message=problem.detail,
                dialect=dialect,
                file=shown_path(problem.path),
                line=line,
                name=problem.name,
            )
        )
    return findings


__all__ = ["backend_class", "check_contract", "expected_queries", "repository_root", "shown_path"]
