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
from typing import TypedDict, TypeVar, cast

from polylogue.errors import MessageOwnershipError, TransientError
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
        return self._atomically(lambda: self._write_batch([bundle]))

    def save_many(
        self, bundles: Iterable[Bundle], *, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> SaveCounts:
        """Save bundles (any iterable, a generator too), ``batch_size`` per transaction.

        Each batch is checked before it is written and committed as a whole: a failure
        raises with the bundle's position, keeps the batches committed before it and
        leaves nothing of the failing batch.

        Except a bundle that claims a message id another conversation owns (stored, or
        listed by an earlier bundle of the batch): that bundle is rejected, the rest of
        its batch is committed without it, and then :class:`MessageOwnershipError` is
        raised naming the bundle (its index in the input and its conversation id) and
        the message; nothing after that batch is read (``next_bundle`` is where to go
        on), and ``saved`` holds the counts of everything saved. Stopping there is
        what an import that resumes "after the last good batch" needs; the rejected
        bundle is the caller's to fix. (Inside a caller's transaction on a backend
        without savepoints, DuckDB, the failed batch cannot be undone alone: the error
        is raised at once, and the caller's transaction can only be rolled back.)

        A message or conversation id repeated within a batch keeps its last values and
        is counted once.
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
                self._commit_batch(batch, first, total)
                first, batch = index + 1, []
        if batch:
            self._commit_batch(batch, first, total)
        return total

    def record_run(self, record: RunRecord) -> None:
        """Store an import run."""
        with self._write_lock:
            self.backend.record_run(record)

    def close(self) -> None:
        """Close the backend if this repository opened it."""
        if self._owns_backend:
            self.backend.close()

    def _commit_batch(self, batch: list[Bundle], first: int, total: SaveCounts) -> None:
        """Commit one batch (bundles ``first``...) and add its counts to ``total``.

        Bundles claiming another conversation's messages are left out and the rest is
        committed; MessageOwnershipError then names them (see :meth:`save_many`).
        """
        last = first + len(batch) - 1
        keep = dict(enumerate(batch, start=first))
        rejected: dict[int, tuple[str, str]] = {}
        collisions = _claimed_twice(keep, rejected)
        for index in rejected:
            del keep[index]
        while True:
            nested = self.backend.in_transaction
            try:
                counts = (
                    self._atomically(lambda: self._write_batch(list(keep.values())))
                    if keep
                    else empty_counts()
                )
            except MessageOwnershipError as exc:
                claimants = _claimants(keep, exc.collisions)
                # Without savepoints (DuckDB) the caller's transaction is lost with it.
                retry = not nested or getattr(self.backend, "supports_savepoints", True)
                if not claimants or not retry:
                    exc.add_note(f"while saving bundles {first}..{last} (rolled back)")
                    raise
                collisions += exc.collisions
                for index, (message_id, owner) in claimants.items():
                    cid = keep.pop(index)[0].conversation_id
                    why = f"message {message_id!r} belongs to conversation {owner!r}"
                    rejected[index] = (cid, why)
                continue
            except Exception as exc:
                exc.add_note(f"while saving bundles {first}..{last} (rolled back)")
                raise
            add_counts(total, counts)
            break
        if rejected:
            raise self._rejection(collisions, rejected, last, total)

    def _rejection(
        self,
        collisions: list[tuple[str, str, str]],
        rejected: dict[int, tuple[str, str]],
        last: int,
        total: SaveCounts,
    ) -> MessageOwnershipError:
        listed = sorted(rejected.items())
        reasons = "; ".join(
            f"bundle {index} (conversation {cid!r}): {why}" for index, (cid, why) in listed[:5]
        )
        if len(listed) > 5:
            reasons += f"; and {len(listed) - 5} more"
        count = f"{len(listed)} bundle{'s' if len(listed) > 1 else ''}"
        detail = (
            f"save_many on {_describe(self.backend)}: {count} rejected, because a message id"
            f" belongs to one conversation for good: {reasons}. The other bundles up to"
            f" {last} were saved; bundles from {last + 1} on were not read: give those"
            f" messages ids of their own, then save the rejected bundles and go on from"
            f" bundle {last + 1}"
        )
        return MessageOwnershipError(
            collisions,
            where="save_many",
            rejected_bundles=[(index, cid) for index, (cid, _why) in listed],
            next_bundle=last + 1,
            saved=cast(dict[str, int], dict(total)),
            detail=detail,
        )

    def _atomically(self, work: Callable[[], _T]) -> _T:
        """Run ``work``, one backend write call, atomically; run it again after a
        transient conflict.

        Outside a caller's transaction the call runs in a transaction of its own (every
        backend write call does), which lets the backend commit with the call's last
        statements (PostgreSQL sends ``COMMIT`` in the bundle's pipeline). Only such a
        transaction can be retried: inside a caller's transaction the conflict has
        already aborted the caller's work, so it is raised.
        """
        for attempt in range(TRANSIENT_RETRIES + 1):
            nested = self.backend.in_transaction
            try:
                with self._write_lock:
                    return work()
            except TransientError:
                if nested or attempt == TRANSIENT_RETRIES:
                    raise
            time.sleep(random.uniform(0.5, 1.0) * min(1.0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_batch(self, batch: Sequence[Bundle]) -> SaveCounts:
        """Write bundles in one backend call (so atomically): set-based across the batch."""
        backend = self.backend
        counts = empty_counts()
        all_messages: list[MessageRecord] = []
        all_attachments: list[AttachmentRecord] = []
        for _conversation, messages, attachments in batch:
            all_messages.extend(messages)
            all_attachments.extend(attachments)
        # The last bundle of a conversation in the batch is the one whose list counts.
        keep: dict[str, list[str]] = {
            c.conversation_id: [a.ref_id for a in atts] for c, _m, atts in batch
        }
        # One call: the backend may send the whole batch at once, and it locks the
        # attachment rows that saving and pruning touch in one pass.
        changed, changed_messages, new_refs = backend.save_bundles(
            [conversation for conversation, _m, _a in batch], all_messages, all_attachments, keep
        )
        # Repeated ids count once (the backend keeps the last occurrence).
        counts["conversations"] = changed
        distinct = len(batch) if len(batch) == 1 else len({c.conversation_id for c, _, _ in batch})
        counts["skipped_conversations"] = distinct - changed
        counts["messages"] = changed_messages
        distinct = len({m.message_id for m in all_messages}) if all_messages else 0
        counts["skipped_messages"] = distinct - changed_messages
        counts["attachments"] = new_refs
        distinct = len({a.ref_id for a in all_attachments}) if all_attachments else 0
        counts["skipped_attachments"] = distinct - new_refs
        return counts

    def __enter__(self) -> StorageRepository:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _claimed_twice(
    bundles: dict[int, Bundle], rejected: dict[int, tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """Find bundles listing a message id that an earlier bundle lists under another
    conversation; record them in ``rejected`` (index: conversation id, why) and return
    the collisions.

    The earlier bundle keeps the id, as if the bundles had been saved one by one.
    """
    ids = [m.message_id for _c, messages, _a in bundles.values() for m in messages]
    if len(set(ids)) == len(ids):
        return []  # the usual case: no id listed twice
    owner_of: dict[str, tuple[str, int]] = {}
    collisions: list[tuple[str, str, str]] = []
    for index, (conversation, messages, _attachments) in bundles.items():
        cid = conversation.conversation_id
        theirs = [
            (m.message_id, *owner_of[m.message_id])
            for m in messages
            if owner_of.get(m.message_id, (cid,))[0] != cid
        ]
        if theirs:
            message_id, owner, at = theirs[0]
            why = f"message {message_id!r} is listed by bundle {at} (conversation {owner!r})"
            rejected[index] = (cid, why)
            collisions.extend((mid, owner, cid) for mid, owner, _at in theirs)
            continue
        for message in messages:
            owner_of.setdefault(message.message_id, (cid, index))
    return collisions


def _claimants(
    bundles: dict[int, Bundle], collisions: Sequence[tuple[str, str, str]]
) -> dict[int, tuple[str, str]]:
    """The bundles that claim a message of ``collisions`` for their conversation:
    index: (message id, its owner)."""
    owner = {(mid, claimant): owner for mid, owner, claimant in collisions}
    found: dict[int, tuple[str, str]] = {}
    for index, (conversation, messages, _attachments) in bundles.items():
        cid = conversation.conversation_id
        for m in messages:
            if (m.message_id, cid) in owner:
                found[index] = (m.message_id, owner[m.message_id, cid])
                break
    return found


def _describe(backend: StorageBackend) -> str:
    describe = getattr(backend, "describe", None)
    return str(describe()) if callable(describe) else type(backend).__name__
