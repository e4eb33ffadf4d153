"""The one interface every storage backend implements.

:class:`StorageBackend` is what :class:`~polylogue.storage.repository.StorageRepository`
and callers program against; :class:`~polylogue.storage.backends.base.SQLBackend` is its
single implementation, bound to a dialect's named queries: each of its methods names the
queries it runs, and docs/ARCHITECTURE.md tabulates them per dialect (method -> query ->
``sql/<dialect>/`` file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.types import ConversationId


@runtime_checkable
class StorageBackend(Protocol):
    """A conversation archive in one database.

    Outside an explicit transaction every write call commits on its own and is atomic.
    ``begin()`` inside a transaction opens a savepoint; ``commit()``/``rollback()`` close
    the innermost level. Transaction state belongs to the calling thread.
    """

    def get_conversation(self, conversation_id: ConversationId | str) -> ConversationRecord | None:
        """The conversation, or None when there is none with that id."""
        ...

    def list_conversations(
        self,
        source: str | None = None,
        provider: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ConversationRecord]:
        """Conversations newest ``updated_at`` first, optionally filtered and paged."""
        ...

    def list_conversations_by_id(
        self,
        after: str = "",
        *,
        limit: int = 1000,
        provider: str | None = None,
        since: str | None = None,
    ) -> list[ConversationRecord]:
        """The next ``limit`` conversations with ``conversation_id > after``, in code-point
        order of the id (the same on every backend), optionally of one provider and
        updated at or after ``since`` (ISO-8601 text): keyset pages for export."""
        ...

    def save_conversation(self, record: ConversationRecord) -> int:
        """Upsert; returns 1 when inserted or changed, 0 when stored unchanged."""
        ...

    def save_conversations(self, records: Sequence[ConversationRecord]) -> int:
        """Upsert many; returns how many distinct ids were inserted or changed.

        An id listed more than once is saved as if the records had been saved one after
        the other (the last occurrence's values) and counts once.
        """
        ...

    def get_messages(self, conversation_id: ConversationId | str) -> list[MessageRecord]:
        """Messages ordered by ``timestamp`` (NULL first), then ``message_id``."""
        ...

    def list_messages_in_id_range(self, after: str, last: str) -> list[MessageRecord]:
        """Messages of the conversations with ``after < conversation_id <= last`` (code
        points), by conversation, each as ``get_messages`` orders them: one query for a
        page of conversations (export, copy, verify)."""
        ...

    def save_messages(self, records: Sequence[MessageRecord]) -> int:
        """Upsert many; returns how many distinct ids were inserted or changed.

        An id listed more than once keeps its last occurrence's values and counts once.
        A message id belongs to one conversation for good: a record whose id is stored
        under another conversation, or listed under two conversations in ``records``,
        fails the whole call with :class:`~polylogue.errors.MessageOwnershipError`
        (nothing of it is saved).
        """
        ...

    def get_attachments(self, conversation_id: ConversationId | str) -> list[AttachmentRecord]:
        """One record per reference of the conversation."""
        ...

    def list_attachments_in_id_range(self, after: str, last: str) -> list[AttachmentRecord]:
        """Refs of the conversations with ``after < conversation_id <= last``, by
        conversation, each as ``get_attachments`` orders them."""
        ...

    def save_attachments(self, records: Sequence[AttachmentRecord]) -> int:
        """Upsert attachment rows and add refs; returns how many refs were new."""
        ...

    def prune_attachments(
        self, conversation_id: ConversationId | str, keep_ref_ids: Sequence[str]
    ) -> int:
        """Delete the conversation's other refs and orphaned attachments; returns refs deleted."""
        ...

    def prune_attachments_many(self, keep_ref_ids: Mapping[str, Sequence[str]]) -> int:
        """``prune_attachments`` for each ``conversation_id: ref ids to keep``; refs deleted."""
        ...

    def replace_attachments(
        self, records: Sequence[AttachmentRecord], keep_ref_ids: Mapping[str, Sequence[str]]
    ) -> tuple[int, int]:
        """``save_attachments(records)`` then ``prune_attachments_many(keep_ref_ids)`` as one
        call; returns (refs new, refs deleted)."""
        ...

    def save_bundles(
        self,
        conversations: Sequence[ConversationRecord],
        messages: Sequence[MessageRecord],
        attachments: Sequence[AttachmentRecord],
        keep_ref_ids: Mapping[str, Sequence[str]],
    ) -> tuple[int, int, int]:
        """``save_conversations``, ``save_messages`` and ``replace_attachments`` as one
        call; returns (conversations changed, messages changed, refs new)."""
        ...

    def delete_conversation(self, conversation_id: ConversationId | str) -> bool:
        """Delete a conversation with its messages and refs; True when it existed."""
        ...

    def record_run(self, record: RunRecord) -> None:
        """Store an import run (replacing one with the same ``run_id``)."""
        ...

    def get_runs(self, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest ``timestamp`` first."""
        ...

    def stats(self) -> dict[str, Any]:
        """Per provider: conversations, messages, attachment refs, characters of text, first
        and last message timestamp; and messages per provider per month."""
        ...

    def analyze(self) -> None:
        """Refresh the query planner's statistics, after a bulk load."""
        ...

    def count_rows(self) -> dict[str, int]:
        """Rows per table: conversations, messages, attachments, attachment_refs, runs."""
        ...

    def schema_version(self) -> int:
        """The schema version of the database."""
        ...

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread has a transaction open on this backend."""
        ...

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def transaction(self) -> AbstractContextManager[StorageBackend]:
        """Commit on success, roll back on exception; nests as a savepoint."""
        ...

    def close(self) -> None: ...
