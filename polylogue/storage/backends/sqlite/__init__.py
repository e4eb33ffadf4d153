"""SQLite, the embedded default: the backend (``backend.py``) and the backup written
before a migration (``backup.py``)."""

from polylogue.storage.backends.sqlite.backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
