"""SQLite, the embedded default: the backend (``backend.py``) and the backup written
before a migration (``backup.py``).

``SQLiteBackend`` is importable from here; importing this package loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polylogue.storage.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]


def __getattr__(name: str) -> Any:
    if name == "SQLiteBackend":
        from polylogue.storage.backends.sqlite.backend import SQLiteBackend

        return SQLiteBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
