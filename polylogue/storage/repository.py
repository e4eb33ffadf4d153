"""``StorageRepository``: whole conversations in, dedup counts out.

A *bundle* is one conversation with its messages and attachment references. Saving one is
a single transaction: the conversation, its messages, its attachments, and the pruning of
refs the bundle no longer lists (its attachment list is authoritative). The counts come
from what the upserts report, never from reading rows back first.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypedDict, TypeVar

from polylogue.errors import TransientError
from polylogue.protocols import StorageBackend
from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)

Bundle = tuple[ConversationRecord, Sequence[MessageRecord], Sequence[AttachmentRecord]]

_T = TypeVar("_T")

TRANSIENT_RETRIES = 8
"""How many times a bundle transaction is run again after a deadlock or serialization
failure (PostgreSQL) before the error reaches the caller. Each retry waits a little longer
(jittered, 10 ms doubling up to 1 s), so colliding writers fall out of step."""

DEFAULT_BATCH_SIZE = 500
"""Bundles per transaction in :meth:`StorageRepository.save_many` (10,000 messages at 20 a
conversation): large enough that commits do not dominate, small enough to bound memory."""


class SaveCounts(TypedDict):
    """What a save did: rows inserted or changed, and rows found already stored."""

    conversations: int
    messages: int
    attachments: int
    skipped_conversations: int
    skipped_messages: int
    skipped_attachments: int


def empty_counts() -> SaveCounts:
    return SaveCounts(
        conversations=0,
        messages=0,
        attachments=0,
        skipped_conversations=0,
        skipped_messages=0,
        skipped_attachments=0,
    )


def add_counts(total: SaveCounts, more: SaveCounts) -> None:
    for key in total:
        total[key] += more[key]  # type: ignore[literal-required]


class BundleError(ValueError):
    """A bundle's records do not belong together (raised before anything is written)."""


def check_bundle(
    conversation: ConversationRecord,
    messages: Sequence[MessageRecord],
    attachments: Sequence[AttachmentRecord],
    where: str = "bundle",
) -> None:
    """Raise :class:`BundleError` unless every record belongs to ``conversation``."""
    if not isinstance(conversation, ConversationRecord):
        raise TypeError(f"{where}: conversation must be a ConversationRecord")
    cid = conversation.conversation_id
    for i, message in enumerate(messages):
        if not isinstance(message, MessageRecord):
            raise TypeError(f"{where}: messages[{i}] must be a MessageRecord")
        if message.conversation_id != cid:
            raise BundleError(
                f"{where}: messages[{i}] ({message.message_id!r}) has conversation_id"
                f" {message.conversation_id!r}, not {cid!r}"
            )
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, AttachmentRecord):
            raise TypeError(f"{where}: attachments[{i}] must be an AttachmentRecord")
        if attachment.conversation_id != cid:
            raise BundleError(
                f"{where}: attachments[{i}] ({attachment.attachment_id!r}) has"
                f" conversation_id {attachment.conversation_id!r}, not {cid!r}"
            )


class StorageRepository:
    """Saves bundles atomically through a :class:`StorageBackend`.

    With no backend it opens the default SQLite database (``default_db_path()``, or
    ``POLYLOGUE_DATABASE_URL``) and closes it in :meth:`close`. Writes from several threads
    are serialised by a lock, so bundles never interleave.
    """

    def __init__(self, backend: StorageBackend | None = None) -> None:
        if backend is None:
            from polylogue.storage.backends import create_backend

            backend = create_backend()
            self._owns_backend = True
        else:
            self._owns_backend = False
        self.backend: StorageBackend = backend
        self._write_lock = threading.RLock()

    def save_conversation(
        self,
        *,
        conversation: ConversationRecord,
        messages: Sequence[MessageRecord] = (),
        attachments: Sequence[AttachmentRecord] = (),
    ) -> SaveCounts:
        """Save one bundle in one transaction and return its counts."""
        messages, attachments = list(messages), list(attachments)
        check_bundle(conversation, messages, attachments)
        bundle: Bundle = (conversation, messages, attachments)
        return self._in_transaction(lambda: self._write_batch([bundle]))

    def save_many(
        self, bundles: Iterable[Bundle], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> SaveCounts:
        """Save bundles (any iterable, a generator too), ``batch_size`` per transaction.

        Each batch is checked before it is written and committed as a whole: a failure
        raises with the bundle's position, keeps the batches committed before it and
        leaves nothing of the failing batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        total = empty_counts()
        batch: list[Bundle] = []
        first = 0
        for index, (conversation, messages, attachments) in enumerate(bundles):
            bundle = (conversation, list(messages), list(attachments))
            check_bundle(*bundle, where=f"bundle {index}")
            batch.append(bundle)
            if len(batch) >= batch_size:
                add_counts(total, self._commit_batch(batch, first))
                first, batch = index + 1, []
        if batch:
            add_counts(total, self._commit_batch(batch, first))
        return total

    def record_run(self, record: RunRecord) -> None:
        """Store an import run."""
        with self._write_lock:
            self.backend.record_run(record)

    def close(self) -> None:
        """Close the backend if this repository opened it."""
        if self._owns_backend:
            self.backend.close()

    def _commit_batch(self, batch: list[Bundle], first: int) -> SaveCounts:
        try:
            return self._in_transaction(lambda: self._write_batch(batch))
        except Exception as exc:
            exc.add_note(f"while saving bundles {first}..{first + len(batch) - 1} (rolled back)")
            raise

    def _in_transaction(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` in a transaction; run it again after a transient conflict.

        Only a transaction this repository opened can be retried: inside a caller's
        transaction the conflict has already aborted the caller's work, so it is raised.
        """
        for attempt in range(TRANSIENT_RETRIES + 1):
            nested = self.backend.in_transaction
            try:
                with self._write_lock, self.backend.transaction():
                    return work()
            except TransientError:
                if nested or attempt == TRANSIENT_RETRIES:
                    raise
            time.sleep(random.uniform(0.5, 1.0) * min(1.0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_batch(self, batch: Sequence[Bundle]) -> SaveCounts:
        """Write bundles inside the caller's transaction: set-based across the batch."""
        backend = self.backend
        counts = empty_counts()
        all_messages: list[MessageRecord] = []
        all_attachments: list[AttachmentRecord] = []
        for _conversation, messages, attachments in batch:
            all_messages.extend(messages)
            all_attachments.extend(attachments)
        changed = backend.save_conversations([conversation for conversation, _m, _a in batch])
        counts["conversations"] = changed
        counts["skipped_conversations"] = len(batch) - changed
        changed_messages = backend.save_messages(all_messages) if all_messages else 0
        counts["messages"] = changed_messages
        counts["skipped_messages"] = len(all_messages) - changed_messages
        new_refs = backend.save_attachments(all_attachments) if all_attachments else 0
        counts["attachments"] = new_refs
        counts["skipped_attachments"] = len(all_attachments) - new_refs
        # The last bundle of a conversation in the batch is the one whose list counts.
        keep: dict[str, list[str]] = {
            c.conversation_id: [a.ref_id for a in atts] for c, _m, atts in batch
        }
        backend.prune_attachments_many(keep)
        return counts

    def __enter__(self) -> StorageRepository:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
