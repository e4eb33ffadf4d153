"""Concurrent writers whose end state is known: the workload of ``test_concurrent_writers``.

Writer ``w`` (one thread of one process) saves, round after round, its own conversations
and the shared ones every writer saves, in a shuffled order, either one bundle per
transaction or all of its round's bundles in one ``save_many`` batch:

* its own conversation ``w{w}-c{k}`` alternates between the shared attachments ``s1`` and
  ``s2`` (writer by writer out of step, so one writer's [s1], [s2] meets another's [s2],
  [s1]: the lock-order trap), always refers to ``s0`` (every writer touches it), and gets
  a new attachment of its own each round that the next round prunes (the orphan is
  deleted);
* every writer saves each shared conversation ``shared-{j}`` every round with its own
  attachment list and message texts, its messages listed in a shuffled order (the same
  message ids from every writer); each writer's last save of it is the same final bundle.

So the end state does not depend on timing: a writer's own conversation holds its last
round's bundle, a shared conversation the final bundle (whichever writer committed last,
its last save was the final one), and the attachments are exactly those the final bundles
refer to, each with ``ref_count`` equal to its number of refs.
"""

from __future__ import annotations

import random
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from polylogue.errors import TransientError
from polylogue.storage.records import AttachmentRecord, ConversationRecord, MessageRecord
from polylogue.storage.repository import Bundle, StorageRepository

_T = TypeVar("_T")

SHARED_ATTACHMENTS = ("s0", "s1", "s2", "s3")


@dataclass(frozen=True)
class Plan:
    """How many writers, rounds and conversations (all writers run the same plan)."""

    processes: int = 4
    threads: int = 4
    rounds: int = 6
    own: int = 2
    shared: int = 2
    messages: int = 3

    @property
    def writers(self) -> int:
        return self.processes * self.threads


def _conversation(cid: str, tag: str) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=cid,
        provider_name="chatgpt",
        provider_conversation_id=f"p-{cid}",
        title=f"{cid} {tag}",
        updated_at=f"2024-01-01T00:00:00Z {tag}",
        content_hash=f"h-{cid}-{tag}",
    )


def _messages(cid: str, plan: Plan, tag: str) -> list[MessageRecord]:
    return [
        MessageRecord(
            message_id=f"{cid}-m{i}",
            conversation_id=cid,
            role="user",
            text=f"message {i} of {cid}, {tag}",
            timestamp=f"2024-01-01T00:00:{i:02d}Z",
            content_hash=f"h-{cid}-m{i}-{tag}",
        )
        for i in range(plan.messages)
    ]


def _attachment(aid: str, cid: str, mid: str | None) -> AttachmentRecord:
    # An attachment's fields depend on its id only, as for a real file.
    return AttachmentRecord(
        attachment_id=aid,
        conversation_id=cid,
        message_id=mid,
        mime_type="image/png",
        size_bytes=len(aid),
        path=f"files/{aid}",
    )


def own_bundle(plan: Plan, w: int, k: int, r: int) -> Bundle:
    cid = f"w{w}-c{k}"
    tag = f"round {r}"
    messages = _messages(cid, plan, tag)
    alternating = ("s1", "s2")[(w + k + r) % 2]
    attachments = [
        _attachment("s0", cid, messages[0].message_id),
        _attachment(alternating, cid, messages[-1].message_id),
        _attachment(f"o-{cid}-r{r}", cid, None),
    ]
    return _conversation(cid, tag), messages, attachments


def shared_bundle(plan: Plan, j: int, w: int, r: int) -> Bundle:
    """Writer ``w``'s round ``r`` bundle of shared conversation ``j``: the final bundle in
    the last round, a writer- and round-specific one before."""
    cid = f"shared-{j}"
    final = r == plan.rounds - 1
    tag = "final" if final else f"writer {w} round {r}"
    messages = _messages(cid, plan, tag)
    picks = ["s3", "s0"]
    if not final:
        # A third of the writers' lists are empty; the rest alternate out of step.
        picks = [("s2", "s1")[(w + r) % 2], "s3"] if (w + j) % 3 else []
    attachments = [_attachment(aid, cid, messages[1].message_id) for aid in picks]
    return _conversation(cid, tag), messages, attachments


def expected_bundles(plan: Plan) -> dict[str, Bundle]:
    """Every conversation's last saved bundle, by conversation id."""
    last = plan.rounds - 1
    bundles = {
        f"w{w}-c{k}": own_bundle(plan, w, k, last)
        for w in range(plan.writers)
        for k in range(plan.own)
    }
    bundles.update({f"shared-{j}": shared_bundle(plan, j, 0, last) for j in range(plan.shared)})
    return bundles


def write(repo: Any, plan: Plan, w: int, seed: int) -> int:
    """Run writer ``w``'s rounds through ``repo`` (a StorageRepository); saves made."""
    rng = random.Random(seed * 1000 + w)
    saves = 0
    for r in range(plan.rounds):
        bundles = [own_bundle(plan, w, k, r) for k in range(plan.own)]
        bundles += [shared_bundle(plan, j, w, r) for j in range(plan.shared)]
        bundles = [(c, rng.sample(m, len(m)), rng.sample(a, len(a))) for c, m, a in bundles]
        rng.shuffle(bundles)
        if r % 2:
            repo.save_many(bundles, batch_size=len(bundles))
        else:
            for conversation, messages, attachments in bundles:
                repo.save_conversation(
                    conversation=conversation, messages=messages, attachments=attachments
                )
        saves += len(bundles)
    return saves


def run_threads(backend: Any, plan: Plan, first_writer: int, seed: int) -> dict[str, Any]:
    """``plan.threads`` writers on one backend, each with a repository of its own.

    Returns the saves made, the errors that reached a writer (formatted) and how many
    transient conflicts (deadlocks, serialization failures) the repositories met.
    """
    errors: list[str] = []
    saves = [0] * plan.threads
    repos = [CountingRepository(backend) for _ in range(plan.threads)]
    start = threading.Barrier(plan.threads)

    def one(t: int) -> None:
        try:
            start.wait()
            saves[t] = write(repos[t], plan, first_writer + t, seed)
        except BaseException:
            errors.append(traceback.format_exc(limit=4))

    threads = [threading.Thread(target=one, args=(t,)) for t in range(plan.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "saves": sum(saves),
        "errors": errors,
        "conflicts": sum(repo.conflicts for repo in repos),
    }


class CountingRepository(StorageRepository):
    """A repository that counts the transient conflicts its transactions met (each one
    was retried, or reached the caller)."""

    conflicts = 0

    def _atomically(self, work: Callable[[], _T]) -> _T:
        def counted() -> _T:
            try:
                return work()
            except TransientError:
                self.conflicts += 1
                raise

        return super()._atomically(counted)


def process_main(url: str, plan: Plan, process: int, seed: int, barrier: Any, out: Any) -> None:
    """One writer process (started with the ``spawn`` method): its threads on ``url``."""
    from polylogue.storage.backends import create_backend

    try:
        backend = create_backend(url)
    except BaseException:
        out.put({"saves": 0, "errors": [traceback.format_exc(limit=4)], "conflicts": 0})
        barrier.abort()
        return
    try:
        barrier.wait()
        out.put(run_threads(backend, plan, process * plan.threads, seed))
    except BaseException:
        out.put({"saves": 0, "errors": [traceback.format_exc(limit=4)], "conflicts": 0})
    finally:
        backend.close()
