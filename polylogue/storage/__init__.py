"""The storage layer: records, backends, the repository and the function API.

Submodules are imported lazily by name (``polylogue.storage.db`` and ``.store`` open no
database on import); the names below are the ones most callers need.
"""

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
