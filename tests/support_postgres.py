"""PostgreSQL for the shared suites: every test gets a freshly created schema.

The server is ``POLYLOGUE_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). Each test's backend lives in a new
schema with a random name, migrated from empty, and the schema is dropped (CASCADE)
afterwards. With no server reachable the PostgreSQL tests skip with a one-line reason,
except under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from polylogue.storage.backends import SQLBackend, redact_url

try:
    import psycopg

    from polylogue.storage.backends.postgresql.backend import PostgresBackend
except ModuleNotFoundError as missing:  # the postgres extra is not installed
    if missing.name not in ("psycopg", "psycopg_pool"):
        raise
    psycopg = None  # type: ignore[assignment]

ENV_URL = "POLYLOGUE_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get(ENV_URL) or DEFAULT_URL


@cache
def unreachable_reason() -> str | None:
    """Why the test server cannot be used, or None when it answers."""
    if psycopg is None:
        return "psycopg is not installed: pip install 'polylogue-storage[postgresql]'"
    try:
        psycopg.connect(server_url(), connect_timeout=5).close()
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {ENV_URL} ({redact_url(server_url())}) is unreachable: {first_line}"
    return None


def require_server() -> str:
    """The server URL; skips the test (fails it under CI=true) when it is unreachable."""
    reason = unreachable_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(reason)
    return server_url()


def admin_execute(sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (autocommit) and return its rows."""
    with psycopg.connect(server_url(), autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema name nobody uses yet; the schema is dropped afterwards if it was made."""
    require_server()
    name = f"polylogue_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        admin_execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextmanager
def postgres_backend(_tmp: Path, **options: Any) -> Iterator[SQLBackend]:
    """A migrated :class:`PostgresBackend` in a fresh schema (the suites' factory)."""
    with fresh_schema() as schema:
        backend = PostgresBackend(server_url(), schema=schema, **options)
        try:
            yield backend
        finally:
            backend.close()


def register(
    factories: dict[str, Callable[[Path], AbstractContextManager[SQLBackend]]],
    savepoint_backends: list[str],
) -> None:
    """Add ``"postgres"`` to the backends the shared suites run against."""
    factories["postgres"] = postgres_backend
    savepoint_backends.append("postgres")


@contextmanager
def role_with_password(password: str) -> Iterator[tuple[str, str]]:
    """A new role that must log in with ``password`` (``scram-sha-256`` from 127.0.0.1).

    The test server trusts 127.0.0.1, so a line for this role alone goes on top of
    ``pg_hba.conf`` while it exists. Skips where the file is not writable here.
    """
    require_server()
    role = f"polylogue_pw_{uuid.uuid4().hex[:8]}"
    [(hba_file,)] = admin_execute("SHOW hba_file")
    hba = Path(hba_file)
    try:
        original = hba.read_text()
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}")
    except OSError as exc:
        pytest.skip(f"cannot require passwords on this server ({hba}: {exc.strerror})")
    try:
        admin_execute("SELECT pg_reload_conf()")
        escaped = password.replace("'", "''")
        admin_execute(f"CREATE ROLE {role} LOGIN PASSWORD '{escaped}'")
        [(database,)] = admin_execute("SELECT current_database()")
        admin_execute(f'GRANT CREATE ON DATABASE "{database}" TO {role}')
        yield role, password
    finally:
        hba.write_text(original)
        admin_execute("SELECT pg_reload_conf()")
        admin_execute(f"DROP OWNED BY {role} CASCADE")
        admin_execute(f"DROP ROLE IF EXISTS {role}")
