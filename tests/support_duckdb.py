"""DuckDB for the shared suites: every test gets a fresh, migrated database file.

DuckDB joins ``backend`` (the conformance and repository suites) but not
``savepoint_backend``: it has no savepoints, and ``tests/test_duckdb.py`` tests what
nested transactions mean there instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from polylogue.storage.backends import SQLBackend
from polylogue.storage.backends.duckdb.backend import DuckDBBackend


@contextmanager
def _duckdb_file(tmp: Path) -> Iterator[SQLBackend]:
    backend = DuckDBBackend(tmp / "archive.duckdb")
    try:
        yield backend
    finally:
        backend.close()


def register(
    factories: dict[str, Callable[[Path], AbstractContextManager[SQLBackend]]],
    savepoint_backends: list[str],
) -> None:
    factories["duckdb"] = _duckdb_file
