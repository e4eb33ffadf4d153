"""A deterministic import workload, the state it must leave, and the child that runs it.

The killed-mid-write suite (``test_killed.py``) SIGKILLs a child process while it imports
this workload, then checks that the database holds exactly what some prefix of the
import's committed transactions left. So the workload and its expected state are
functions of a seed alone, computed the same way in the test and in the child:

* conversation ``c`` is saved in versions ``1..last(c)``; each version keeps every message
  id of the one before (and may add some, and change the text of others), so saving
  version ``v`` leaves exactly version ``v``'s messages; its attachment list changes from
  version to version and is authoritative (refs left out are pruned);
* attachments come from a small shared pool, so conversations share them; an attachment's
  own fields depend on its id only, as for a real file, so the rows do not depend on the
  order in which conversations referred to it;
* a *step* is one ``save_many`` call (``batch_size`` bundles per transaction, a batch
  never holding two versions of one conversation), one ``save_conversation`` call, or
  one ``record_run`` call; the child prints the index of every step it finished.

:class:`Model` replays committed transactions: a conversation holds its latest saved
version's fields and refs, and every message ever saved for it with the latest values
(saves never delete messages), which is what a rerun from the start over a database that
was further along leaves.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.repository import Bundle

READY = "ready"
FINISHED = "finished"

_PROVIDERS = ("chatgpt", "claude", "gemini", "codex")
_MIME_TYPES = ("image/png", "application/pdf", "text/plain", None)


@dataclass(frozen=True)
class Sizes:
    """How big the workload is."""

    conversations: int = 36
    versions: int = 3
    attachments: int = 20
    first_messages: tuple[int, int] = (2, 12)
    """Messages of a conversation's first version: a random number in this range."""


@dataclass(frozen=True)
class Step:
    """One call of the import: ``many`` (save_many), ``one`` (save_conversation), ``run``."""

    kind: str
    bundles: tuple[tuple[int, int], ...] = ()
    """(conversation, version) pairs, in call order."""
    batch_size: int = 1
    run: int = 0

    def transactions(self) -> list[tuple[tuple[int, int], ...]]:
        """The bundles each transaction of this step commits, in order."""
        if self.kind == "run":
            return [()]
        size = self.batch_size
        return [self.bundles[i : i + size] for i in range(0, len(self.bundles), size)]


@dataclass
class Workload:
    """Every record and step of the import of ``seed``."""

    seed: int
    sizes: Sizes = field(default_factory=Sizes)

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.seed}:shape")
        n = self.sizes.conversations
        self.last_version = [rng.randint(1, self.sizes.versions) for _ in range(n)]
        self._bundles: dict[tuple[int, int], Bundle] = {}
        self.steps = self._make_steps(rng)

    # -- records ----------------------------------------------------------------------

    def conversation_id(self, c: int) -> str:
        # Unicode and a quote in ids: they travel through every query as parameters.
        return f"conv-{c:03d}-{'ü' if c % 2 else 'é'}'{c % 5}"

    def message_count(self, c: int, version: int) -> int:
        rng = random.Random(f"{self.seed}:count:{c}")
        low, high = self.sizes.first_messages
        count = rng.randint(low, high)
        for _ in range(2, version + 1):
            count += rng.choice((0, 0, 1, 3))
        return count

    def _revision(self, c: int, i: int, version: int) -> int:
        """How many times message ``i`` of ``c`` changed up to ``version``."""
        born = next(v for v in range(1, version + 1) if i < self.message_count(c, v))
        return sum(
            1
            for v in range(born + 1, version + 1)
            if random.Random(f"{self.seed}:edit:{c}:{i}:{v}").random() < 0.3
        )

    def message(self, c: int, i: int, version: int) -> MessageRecord:
        cid = self.conversation_id(c)
        revision = self._revision(c, i, version)
        text = f"message {i} of {cid}, revision {revision} 🧪"
        if i % 7 == 3:
            text += " with U+0000 \x00 and ␀ inside"
        if i % 5 == 4:
            text = "" if revision % 2 else text
        return MessageRecord(
            message_id=f"{cid}:m{i}",
            conversation_id=cid,
            provider_message_id=None if i % 4 == 0 else f"pm-{i}",
            role=("user", "assistant")[i % 2],
            text=text,
            timestamp=None
            if i % 6 == 5
            else f"2024-01-{1 + c % 28:02d}T00:{i // 60:02d}:{i % 60:02d}Z",
            content_hash=hashlib.sha256(text.encode()).hexdigest()[:16],
            provider_meta=None if i % 3 == 0 else {"revision": revision, "tags": ["a", i]},
            version=1 + i % 2,
        )

    def attachment(self, a: int, c: int, message_id: str | None) -> AttachmentRecord:
        return AttachmentRecord(
            attachment_id=f"att-{a:02d}",
            conversation_id=self.conversation_id(c),
            message_id=message_id,
            mime_type=_MIME_TYPES[a % len(_MIME_TYPES)],
            size_bytes=None if a % 5 == 4 else a * 1009,
            path=f"/files/{a}/ü.bin" if a % 3 else None,
            provider_meta=None if a % 4 == 1 else {"sha": f"{a:08x}", "dims": [a, a + 1]},
        )

    def bundle(self, c: int, version: int) -> Bundle:
        key = (c, version)
        if key not in self._bundles:
            self._bundles[key] = self._make_bundle(c, version)
        return self._bundles[key]

    def _make_bundle(self, c: int, version: int) -> Bundle:
        cid = self.conversation_id(c)
        messages = [self.message(c, i, version) for i in range(self.message_count(c, version))]
        rng = random.Random(f"{self.seed}:refs:{c}:{version}")
        pool = self.sizes.attachments
        chosen = rng.sample(range(pool), rng.choice((0, 1, 2, 2, 3, 4)))
        attachments = [
            self.attachment(
                a,
                c,
                None if not messages or rng.random() < 0.3 else rng.choice(messages).message_id,
            )
            for a in chosen
        ]
        title = f"Conversation {c}, version {version}" if c % 3 else f"Conversation {c}"
        conversation = ConversationRecord(
            conversation_id=cid,
            provider_name=_PROVIDERS[c % len(_PROVIDERS)],
            provider_conversation_id=f"p-{c}",
            title=title,
            created_at="2024-01-01T00:00:00Z",
            updated_at=f"2024-0{version}-01T00:00:{c % 60:02d}Z",
            content_hash=hashlib.sha256(
                json.dumps([title, version, [m.content_hash for m in messages]]).encode()
            ).hexdigest()[:16],
            provider_meta={"source": f"export-{version}", "c": c},
            version=1 + c % 3,
        )
        return conversation, messages, attachments

    def run_record(self, phase: int) -> RunRecord:
        return RunRecord(
            run_id=f"import-phase-{phase}",
            timestamp=f"2024-0{phase}-02T00:00:00Z",
            plan_snapshot={"phase": phase},
            counts={"bundles": sum(1 for v in self.last_version if v >= phase)},
            indexed=phase % 2 == 0,
            duration_ms=phase * 100,
        )

    # -- steps ------------------------------------------------------------------------

    def _make_steps(self, rng: random.Random) -> list[Step]:
        steps: list[Step] = []
        for version in range(1, self.sizes.versions + 1):
            order = [c for c, last in enumerate(self.last_version) if last >= version]
            rng.shuffle(order)
            while order:
                size = min(len(order), rng.choice((1, 1, 2, 3, 5, 8, 13)))
                chunk, order = order[:size], order[size:]
                bundles = tuple((c, version) for c in chunk)
                if size == 1 and rng.random() < 0.6:
                    steps.append(Step("one", bundles))
                else:
                    batch = rng.choice((size, size, max(1, size // 2), 3))
                    steps.append(Step("many", bundles, batch_size=batch))
            steps.append(Step("run", run=version))
        return steps

    def transactions_of(self, steps: Sequence[Step]) -> list[tuple[tuple[int, int], ...]]:
        return [tx for step in steps for tx in step.transactions()]


# -- the expected state ---------------------------------------------------------------


State = dict[str, Any]
"""A database's content as the public API returns it, in comparable form."""


class Model:
    """What committed transactions of a :class:`Workload` leave in a database."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.latest: dict[int, int] = {}
        self.messages: dict[int, dict[str, MessageRecord]] = {}
        self.runs: set[int] = set()

    def copy(self) -> Model:
        other = Model(self.workload)
        other.latest = dict(self.latest)
        other.messages = {c: dict(m) for c, m in self.messages.items()}
        other.runs = set(self.runs)
        return other

    def apply(self, step: Step, transaction: tuple[tuple[int, int], ...]) -> None:
        """Replay one committed transaction of ``step``."""
        if step.kind == "run":
            self.runs.add(step.run)
            return
        for c, version in transaction:
            _conversation, messages, _attachments = self.workload.bundle(c, version)
            self.latest[c] = version
            stored = self.messages.setdefault(c, {})
            for m in messages:
                stored[m.message_id] = m

    def state(self) -> State:
        conversations: dict[str, Any] = {}
        ref_counts: dict[str, int] = {}
        for c, version in self.latest.items():
            conversation, _messages, attachments = self.workload.bundle(c, version)
            conversations[conversation.conversation_id] = {
                "conversation": conversation.model_dump(),
                "messages": sorted_dumps(self.messages[c].values(), "message_id"),
                "attachments": sorted_dumps(attachments, "attachment_id", "message_id"),
            }
            for a in attachments:
                ref_counts[a.attachment_id] = ref_counts.get(a.attachment_id, 0) + 1
        return {
            "conversations": conversations,
            "ref_counts": ref_counts,
            "runs": sorted_dumps((self.workload.run_record(p) for p in self.runs), "run_id"),
        }

    def describe(self) -> dict[str, int]:
        """Each saved conversation's latest version (for failure messages)."""
        return {self.workload.conversation_id(c): v for c, v in sorted(self.latest.items())}


def sorted_dumps(records: Any, *keys: str) -> list[dict[str, Any]]:
    dumps = [r.model_dump() for r in records]
    return sorted(dumps, key=lambda d: tuple(str(d[k]) for k in keys))


# -- the child ----------------------------------------------------------------------------


def run_steps(repo: Any, workload: Workload, start: int, report: Any = None) -> None:
    """Run ``workload.steps[start:]`` through ``repo`` (a StorageRepository)."""
    for index in range(start, len(workload.steps)):
        step = workload.steps[index]
        if step.kind == "run":
            repo.record_run(workload.run_record(step.run))
        elif step.kind == "one":
            conversation, messages, attachments = workload.bundle(*step.bundles[0])
            repo.save_conversation(
                conversation=conversation, messages=messages, attachments=attachments
            )
        else:
            repo.save_many(_bundles(workload, step), batch_size=step.batch_size)
        if report is not None:
            report(index)


def _bundles(workload: Workload, step: Step) -> Iterator[Bundle]:
    for c, version in step.bundles:
        yield workload.bundle(c, version)


def child_main() -> None:
    """``python -c 'from tests.reliability._workload import child_main; child_main()' SPEC``.

    SPEC is JSON ``{"seed", "sizes", "module"}``. The child imports the backend's module,
    builds every record, prints ``ready`` and reads one line of JSON ``{"url", "start"}``
    on stdin (EOF: exit); then it opens the database, runs the steps from ``start``,
    prints the index of each step it finishes, then ``finished``.
    """
    import importlib

    from polylogue.storage.backends import create_backend
    from polylogue.storage.repository import StorageRepository

    spec = json.loads(sys.argv[1])
    importlib.import_module(spec["module"])
    sizes = dict(spec["sizes"], first_messages=tuple(spec["sizes"]["first_messages"]))
    workload = Workload(spec["seed"], Sizes(**sizes))
    for step in workload.steps:
        for c, version in step.bundles:
            workload.bundle(c, version)
    print(READY, flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return
    job = json.loads(line)
    start = int(job["start"])

    def report(index: int) -> None:
        sys.stdout.write(f"{index}\n")
        sys.stdout.flush()

    backend = create_backend(job["url"])
    try:
        run_steps(StorageRepository(backend), workload, start, report)
    finally:
        backend.close()
    print(FINISHED, flush=True)


def sizes_spec(sizes: Sizes) -> dict[str, Any]:
    return {
        "conversations": sizes.conversations,
        "versions": sizes.versions,
        "attachments": sizes.attachments,
        "first_messages": list(sizes.first_messages),
    }
