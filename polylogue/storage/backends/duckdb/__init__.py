"""DuckDB, the columnar choice for analysis: the backend (``backend.py``), its aiosql
adapter (``adapter.py``) and the one shared database handle per file (``handles.py``).

Importing this package loads the ``duckdb`` driver: nothing imports it but a DuckDB user.
"""

from polylogue.storage.backends.duckdb.backend import DuckDBBackend

__all__ = ["DuckDBBackend"]
