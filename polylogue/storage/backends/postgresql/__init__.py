"""PostgreSQL through psycopg 3 and a connection pool: the backend (``backend.py``), the
aiosql adapter every query runs through (``adapter.py``), the reversible form of values
PostgreSQL would not give back as saved (``values.py``), URLs and connection strings
(``url.py``, ``dsn.py``) and what migrations need that is not a query (``migrate.py``).

``PostgresBackend`` is importable from here; importing this package loads no driver (the
URL parser is used by the configuration layer, before anyone knows psycopg is installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polylogue.storage.backends.postgresql.backend import PostgresBackend

__all__ = ["PostgresBackend"]


def __getattr__(name: str) -> Any:
    if name == "PostgresBackend":
        from polylogue.storage.backends.postgresql.backend import PostgresBackend

        return PostgresBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
