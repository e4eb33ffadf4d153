"""Fixtures shared by the suites.

``backend`` runs a test once per backend: SQLite on a file and in memory here, and every
backend that a ``tests/support_<name>.py`` module registers (PostgreSQL, DuckDB). A
factory is a context manager that yields a fresh, empty, migrated backend and cleans up
after it. ``savepoint_backend`` covers only backends that have savepoints (the nested
transaction tests do not apply to DuckDB, which has tests of its own).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from polylogue.storage.backends import SQLBackend, SQLiteBackend

BackendFactory = Callable[[Path], AbstractContextManager[SQLBackend]]


@contextmanager
def _sqlite_file(tmp: Path) -> Iterator[SQLBackend]:
    backend = SQLiteBackend(tmp / "archive.db")
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def _sqlite_memory(tmp: Path) -> Iterator[SQLBackend]:
    backend = SQLiteBackend(":memory:")
    try:
        yield backend
    finally:
        backend.close()


BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "sqlite-file": _sqlite_file,
    "sqlite-memory": _sqlite_memory,
}
SAVEPOINT_BACKENDS: list[str] = ["sqlite-file", "sqlite-memory"]

for _support in ("tests.support_postgres", "tests.support_duckdb"):
    try:
        _module = importlib.import_module(_support)
    except ModuleNotFoundError as _exc:
        if _exc.name != _support:
            raise
        continue
    _module.register(BACKEND_FACTORIES, SAVEPOINT_BACKENDS)


@pytest.fixture(params=list(BACKEND_FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLBackend]:
    with BACKEND_FACTORIES[request.param](tmp_path) as made:
        yield made


@pytest.fixture(params=SAVEPOINT_BACKENDS)
def savepoint_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLBackend]:
    with BACKEND_FACTORIES[request.param](tmp_path) as made:
        yield made


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG_DATA_HOME, so the default database lives in tmp_path."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.delenv("POLYLOGUE_DATABASE_URL", raising=False)
    return home


def raw_scalar(backend: SQLBackend, sql: str, *params: Any) -> Any:
    """One value from a raw query on the backend's own connection (tests only).

    Write ``?`` for parameters; it becomes ``%s`` for psycopg.
    """
    if backend.dialect == "postgresql":
        sql = sql.replace("?", "%s")
    with backend._reading("test query") as conn:
        cursor = conn.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
