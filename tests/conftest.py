"""Fixtures shared by the suites.

``backend`` runs a test once per backend this machine can reach: SQLite on a file and in
memory always; PostgreSQL and DuckDB join by adding a factory to ``BACKEND_FACTORIES``.
``savepoint_backend`` covers only the backends that have savepoints (the nested
transaction tests are not applicable to DuckDB, which has its own tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from polylogue.storage.backends import SQLBackend, SQLiteBackend

BackendFactory = Callable[[Path], SQLBackend]


def _sqlite_file(tmp: Path) -> SQLBackend:
    return SQLiteBackend(tmp / "archive.db")


def _sqlite_memory(tmp: Path) -> SQLBackend:
    return SQLiteBackend(":memory:")


BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "sqlite-file": _sqlite_file,
    "sqlite-memory": _sqlite_memory,
}
SAVEPOINT_BACKENDS = ["sqlite-file", "sqlite-memory"]


@pytest.fixture(params=list(BACKEND_FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLBackend]:
    made = BACKEND_FACTORIES[request.param](tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=SAVEPOINT_BACKENDS)
def savepoint_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLBackend]:
    made = BACKEND_FACTORIES[request.param](tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG_DATA_HOME, so the default database lives in tmp_path."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.delenv("POLYLOGUE_DATABASE_URL", raising=False)
    return home


def raw_scalar(backend: SQLBackend, sql: str, *params: Any) -> Any:
    """One value from a raw query on the backend's own connection (tests only).

    Write ``?`` for parameters; it is adapted to the driver's style.
    """
    with backend._reading("test query") as conn:
        cursor = conn.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]
