"""The storage layer: records, backends, the repository and the function API.

The names below are the ones most callers need. They are loaded on first use (PEP 562),
not on import: importing ``polylogue.storage.records`` (or the protocol, which needs the
records) must not load the database drivers, the query loader or the migration scripts.
Submodules open no database on import either.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polylogue.storage.backends import BackendConfig, SQLiteBackend, create_backend
    from polylogue.storage.records import (
        MAX_ATTACHMENT_SIZE,
        AttachmentRecord,
        ConversationRecord,
        MessageRecord,
        RunRecord,
    )
    from polylogue.storage.repository import SaveCounts, StorageRepository
    from polylogue.storage.store import store_records

_HOMES = {
    "MAX_ATTACHMENT_SIZE": "polylogue.storage.records",
    "AttachmentRecord": "polylogue.storage.records",
    "BackendConfig": "polylogue.storage.backends",
    "ConversationRecord": "polylogue.storage.records",
    "MessageRecord": "polylogue.storage.records",
    "RunRecord": "polylogue.storage.records",
    "SQLiteBackend": "polylogue.storage.backends",
    "SaveCounts": "polylogue.storage.repository",
    "StorageRepository": "polylogue.storage.repository",
    "create_backend": "polylogue.storage.backends",
    "store_records": "polylogue.storage.store",
}
"""Where each re-exported name lives."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        # ``polylogue.storage.repository`` after a bare ``import polylogue.storage`` kept
        # working while this module imported its submodules eagerly; it still does.
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    # Cached: later lookups do not come back here.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "MAX_ATTACHMENT_SIZE",
    "AttachmentRecord",
    "BackendConfig",
    "ConversationRecord",
    "MessageRecord",
    "RunRecord",
    "SQLiteBackend",
    "SaveCounts",
    "StorageRepository",
    "create_backend",
    "store_records",
]
