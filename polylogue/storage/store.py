"""Record-level functions existing callers use, on a plain ``sqlite3.Connection``.

They run the same named queries as :class:`~polylogue.storage.backends.SQLiteBackend`
(through :class:`~polylogue.storage.borrowed.BorrowedSQLiteBackend`), inside the caller's
transaction: nothing here commits a connection it was given.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from polylogue.storage.borrowed import BorrowedSQLiteBackend
from polylogue.storage.db import connection_context
from polylogue.storage.records import (
    MAX_ATTACHMENT_SIZE,
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.repository import SaveCounts, StorageRepository


def store_records(
    *,
    conversation: ConversationRecord,
    messages: Sequence[MessageRecord],
    attachments: Sequence[AttachmentRecord],
    conn: sqlite3.Connection | None = None,
) -> SaveCounts:
    """Save one bundle (as ``StorageRepository.save_conversation``) and return its counts.

    With ``conn`` the work joins the caller's transaction; without, it opens the default
    database and commits.
    """
    with connection_context(conn) as active:
        repository = StorageRepository(backend=BorrowedSQLiteBackend(active))
        return repository.save_conversation(
            conversation=conversation, messages=messages, attachments=attachments
        )


def upsert_conversation(conn: sqlite3.Connection, record: ConversationRecord) -> bool:
    """Insert or update; True when a row was inserted or changed."""
    return BorrowedSQLiteBackend(conn).save_conversation(record) > 0


def upsert_message(conn: sqlite3.Connection, record: MessageRecord) -> bool:
    """Insert or update; True when a row was inserted or changed."""
    return BorrowedSQLiteBackend(conn).save_messages([record]) > 0


def upsert_attachment(conn: sqlite3.Connection, record: AttachmentRecord) -> bool:
    """Save the attachment row and its ref; True when either was inserted or changed."""
    new_refs, changed_rows = BorrowedSQLiteBackend(conn).save_attachments_counted([record])
    return new_refs > 0 or changed_rows > 0


def record_run(conn: sqlite3.Connection, record: RunRecord) -> None:
    """Store an import run."""
    BorrowedSQLiteBackend(conn).record_run(record)


__all__ = [
    "MAX_ATTACHMENT_SIZE",
    "AttachmentRecord",
    "ConversationRecord",
    "MessageRecord",
    "RunRecord",
    "record_run",
    "store_records",
    "upsert_attachment",
    "upsert_conversation",
    "upsert_message",
]
