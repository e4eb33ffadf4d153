"""The schema check: every named query prepares against the schema its migrations build.

A misspelled column or a stray comma in a query file passes the loader and sqlfluff and
fails only when the binding runs it. Here a scratch database is built from the dialect's
migrations (SQLite and DuckDB in memory, PostgreSQL in a temporary schema that is dropped
afterwards) with the migration runner itself, and each query is prepared against it by the
driver: SQLite ``EXPLAIN``, DuckDB and PostgreSQL a server-side ``PREPARE``, inside a
transaction that is rolled back. The result columns of the queries the binding reads by
name are compared with :data:`polylogue.storage.queries.RESULT_COLUMNS`. The scratch
database's catalog (``sql/<dialect>/checks/catalog.sql``) gives the parity check its
:class:`~polylogue.sqlcheck.parity.LogicalSchema`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiosql.utils import VAR_REF

from polylogue.sqlcheck.contract import backend_class, shown_path
from polylogue.sqlcheck.findings import Finding
from polylogue.sqlcheck.parity import LogicalSchema
from polylogue.storage.migrate import MigrationRunner
from polylogue.storage.migration_scripts import discover
from polylogue.storage.queries import RESULT_COLUMNS
from polylogue.storage.sqlfiles import ParsedQuery, parse_query_folder, resource_dir

URL_ENV = "POLYLOGUE_DATABASE_URL"


def postgres_url(url: str | None) -> str | None:
    """``url``, else ``POLYLOGUE_DATABASE_URL`` when it names a PostgreSQL server."""
    for candidate in (url, os.environ.get(URL_ENV)):
        if candidate and candidate.split(":", 1)[0] in ("postgresql", "postgres"):
            return candidate
    return None


def check_schema(
    dialect: str, sql_dir: Path, migrations_dir: Path, url: str | None = None
) -> list[Finding]:
    """Findings for the queries of ``sql_dir/<dialect>`` that do not prepare against the
    schema ``migrations_dir/<dialect>`` builds, or return other columns than the binding
    reads."""
    return inspect_schema(dialect, sql_dir, migrations_dir, url)[0]


def inspect_schema(
    dialect: str, sql_dir: Path, migrations_dir: Path, url: str | None = None
) -> tuple[list[Finding], LogicalSchema | None]:
    """:func:`check_schema`'s findings, and the scratch database's logical schema (None
    when none could be built)."""
    folder = migrations_dir / dialect
    try:
        scripts = discover(dialect, folder)
    except Exception as exc:  # the migrations check names the script
        return [_finding(dialect, "error", f"no scratch database: {exc}", file=folder)], None
    target = None
    if dialect == "postgresql":
        target = postgres_url(url)
        if target is None:
            return [
                _finding(
                    dialect,
                    "not-checked",
                    "PostgreSQL queries were not checked: give --url postgresql://... or set"
                    f" {URL_ENV} to a PostgreSQL server (a temporary schema is made there"
                    " and dropped)",
                )
            ], None
    queries, _parse_problems = parse_query_folder(sql_dir / dialect)  # the contract's job
    try:
        with _scratch(dialect, folder, target) as conn:
            findings = [
                finding for query in queries for finding in _check_query(dialect, conn, query)
            ]
            catalog = _catalog(dialect, conn)
    except Exception as exc:
        return [
            _finding(dialect, "error", f"could not build the scratch database: {exc}", file=folder)
        ], None
    schema = LogicalSchema.from_catalog(
        dialect, catalog, scripts[-1].version, [s.path for s in scripts]
    )
    return findings, schema


def _finding(
    dialect: str,
    severity: Any,
    message: str,
    *,
    file: Path | None = None,
    line: int | None = None,
    name: str | None = None,
) -> Finding:
    return Finding(
        check="schema",
        severity=severity,
        message=message,
        dialect=dialect,
        file=shown_path(file) if file else None,
        line=line,
        name=name,
    )


@contextmanager
def _scratch(dialect: str, migrations: Path, url: str | None) -> Iterator[Any]:
    """A driver connection to a new database migrated with the package's runner."""
    cls: Any = backend_class(dialect)
    if dialect == "postgresql":
        backend = cls(url, schema=f"polylogue_check_{uuid.uuid4().hex[:12]}", migrate=False)
    else:
        backend = cls(":memory:", migrate=False)
    try:
        try:
            MigrationRunner(backend, migrations, where=backend.describe()).migrate(backup=False)
            with backend.migration_connection() as conn:
                yield conn
        finally:
            if dialect == "postgresql":
                _drop_scratch_schema(backend)
    finally:
        backend.close()


def _drop_scratch_schema(backend: Any) -> None:
    [drop] = [q for q in _check_queries("postgresql", "scratch") if q.name == "drop_current_schema"]
    with backend.migration_connection() as conn:
        conn.execute(drop.sql)
        if not conn.autocommit:
            conn.commit()


def _check_queries(dialect: str, stem: str) -> list[ParsedQuery]:
    """The checker's own queries (``sql/<dialect>/checks/<stem>.sql`` of the package)."""
    parsed, problems = parse_query_folder(resource_dir("sql", dialect) / "checks")
    if problems:
        raise RuntimeError("; ".join(problem.text for problem in problems))
    return [q for q in parsed if q.path.stem == stem]


def _catalog(dialect: str, conn: Any) -> dict[str, list[dict[str, Any]]]:
    catalog = {}
    for query in _check_queries(dialect, "catalog"):
        cursor = conn.execute(query.sql)
        names = [d[0] for d in cursor.description]
        catalog[query.name] = [
            dict(row) if isinstance(row, Mapping) else dict(zip(names, row, strict=True))
            for row in cursor.fetchall()
        ]
    return catalog


def _check_query(dialect: str, conn: Any, query: ParsedQuery) -> list[Finding]:
    """Prepare ``query``; compare its result columns where the binding reads them."""
    if query.operation == "#" and dialect != "sqlite":
        return []  # scripts (SET, DO ...) cannot be prepared; SQLite can EXPLAIN its PRAGMAs
    try:
        columns = _PREPARE[dialect](conn, query)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [
            _finding(
                dialect,
                "error",
                f"database error: {message}",
                file=query.path,
                line=query.line,
                name=query.name,
            )
        ]
    expected = RESULT_COLUMNS.get(query.name)
    if expected is None or columns is None:
        return []
    findings = []
    missing = [c for c in expected if c not in columns]
    if missing:
        findings.append(
            _finding(
                dialect,
                "error",
                f"returns no column {', '.join(missing)}, which the binding reads"
                f" (it returns {', '.join(columns)}; see RESULT_COLUMNS in"
                " polylogue/storage/queries.py)",
                file=query.path,
                line=query.line,
                name=query.name,
            )
        )
    extra = [c for c in columns if c not in expected]
    if extra:
        findings.append(
            _finding(
                dialect,
                "warning",
                f"returns column {', '.join(extra)}, which the binding does not read",
                file=query.path,
                line=query.line,
                name=query.name,
            )
        )
    return findings


def _param_names(sql: str) -> list[str]:
    names: list[str] = []
    for match in VAR_REF.finditer(sql):
        name = match.groupdict()["var_name"]
        quoted = match.groupdict()["squote"] or match.groupdict()["dquote"]
        if name and not quoted and name not in names:
            names.append(name)
    return names


def _sqlite(conn: Any, query: ParsedQuery) -> list[str] | None:
    params = dict.fromkeys(_param_names(query.sql))
    conn.execute("EXPLAIN " + query.sql, params).fetchall()
    if query.name not in RESULT_COLUMNS:
        return None
    # EXPLAIN's own columns are the plan's: the query's come from running it, on an empty
    # scratch database, in a transaction that is rolled back. Parameters are 0 there, not
    # NULL: LIMIT and OFFSET refuse NULL when they run (the binding always passes those).
    if not conn.in_transaction:
        conn.execute("BEGIN")
    try:
        cursor = conn.execute(query.sql, dict.fromkeys(params, 0))
        return [d[0] for d in cursor.description or ()]
    finally:
        conn.rollback()


def _duckdb(conn: Any, query: ParsedQuery) -> list[str] | None:
    import duckdb

    sql = str(VAR_REF.sub(_colon_to_dollar, query.sql))
    conn.execute("BEGIN TRANSACTION")
    try:
        params = dict.fromkeys(_param_names(query.sql))
        try:
            conn.execute(f"PREPARE polylogue_check_{uuid.uuid4().hex[:8]} AS {sql}")
        except duckdb.ParserException as exc:
            if "not a preparable statement" not in str(exc):
                raise
            # DDL (CREATE TABLE IF NOT EXISTS): run it, in a transaction rolled back too.
            conn.execute("ROLLBACK")
            conn.execute("BEGIN TRANSACTION")
            conn.execute(sql, params)
        if query.name not in RESULT_COLUMNS:
            return None
        cursor = conn.execute(sql, params)
        return [d[0] for d in cursor.description or ()]
    finally:
        conn.execute("ROLLBACK")


def _colon_to_dollar(match: Any) -> str:
    found = match.groupdict()
    if found["squote"] or found["dquote"]:
        return str(match.group(0))
    return f"{found['lead']}${found['var_name']}"


def _postgresql(conn: Any, query: ParsedQuery) -> list[str] | None:
    from psycopg import pq

    order = _param_names(query.sql)

    def positional(match: Any) -> str:
        found = match.groupdict()
        if found["squote"] or found["dquote"]:
            return str(match.group(0))
        return f"{found['lead']}${order.index(found['var_name']) + 1}"

    sql = str(VAR_REF.sub(positional, query.sql))
    name = f"polylogue_check_{uuid.uuid4().hex[:8]}".encode()
    conn.execute("BEGIN")
    try:
        result = conn.pgconn.prepare(name, sql.encode())
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError((result.error_message or b"").decode(errors="replace"))
        described = conn.pgconn.describe_prepared(name)
        return [described.fname(i).decode() for i in range(described.nfields)]
    finally:
        conn.execute("ROLLBACK")


_PREPARE = {"sqlite": _sqlite, "duckdb": _duckdb, "postgresql": _postgresql}


__all__ = ["URL_ENV", "check_schema", "inspect_schema", "postgres_url"]
