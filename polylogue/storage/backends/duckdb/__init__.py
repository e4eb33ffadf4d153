"""DuckDB, the columnar choice for analysis: the backend (``backend.py``), its aiosql
adapter (``adapter.py``) and the one shared database handle per file (``handles.py``).

``DuckDBBackend`` is importable from here; importing this package loads no driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polylogue.storage.backends.duckdb.backend import DuckDBBackend

__all__ = ["DuckDBBackend"]


def __getattr__(name: str) -> Any:
    if name == "DuckDBBackend":
        from polylogue.storage.backends.duckdb.backend import DuckDBBackend

        return DuckDBBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
