"""A message id belongs to one conversation for good (issue 8, defect 2), on every backend.

Saving bundle A with message ``m1`` and then bundle B whose message is also ``m1`` used to
overwrite A's message with B's text and report ``messages: 1``, leaving B without it. Now
the write that claims another conversation's message is refused whole with
:class:`MessageOwnershipError` naming the id and both conversations: serially, within one
batch, through the large-batch paths (DuckDB's classify/insert/update, PostgreSQL's
pipelined chunks), in ``save_many`` (the bundle is rejected, the rest of its batch kept)
and under concurrent writers (PostgreSQL's READ COMMITTED included).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polylogue.errors import IntegrityError, MessageOwnershipError
from polylogue.storage.backends import SQLBackend, SQLiteBackend
from polylogue.storage.records import MessageRecord
from polylogue.storage.repository import Bundle, StorageRepository
from tests.conftest import raw_scalar
from tests.records import attachment, conversation, message
from tests.reliability._interleave import WAIT, Side, wait_until_blocked


def _large_batch(backend: SQLBackend) -> int:
    """A batch size that takes the backend's large-batch path (the package's constants)."""
    if backend.dialect == "duckdb":
        from polylogue.storage.backends.duckdb.backend import SPLIT_UPSERT_ROWS

        return SPLIT_UPSERT_ROWS + 5
    if backend.dialect == "postgresql":
        from polylogue.storage.backends.postgresql.pipelined import PIPELINE_CHUNK

        return 2 * PIPELINE_CHUNK + 5
    return 1_005


def _table_counts(backend: SQLBackend) -> dict[str, int]:
    tables = ("conversations", "messages", "attachments", "attachment_refs")
    return {t: int(raw_scalar(backend, f"SELECT count(*) FROM {t}")) for t in tables}


def _owned_by_a(backend: SQLBackend) -> StorageRepository:
    repo = StorageRepository(backend)
    repo.save_conversation(
        conversation=conversation("A"),
        messages=[message("m0", "A", text="A's first"), message("m1", "A", text="A's own")],
        attachments=[attachment("att-a", "A", "m1")],
    )
    return repo


def test_claiming_a_stored_message_is_refused_and_nothing_of_the_bundle_is_saved(
    backend: SQLBackend,
) -> None:
    repo = _owned_by_a(backend)
    before = _table_counts(backend)
    stolen = message("m1", "B", text="B's text")
    with pytest.raises(MessageOwnershipError) as caught:
        repo.save_conversation(
            conversation=conversation("B"),
            messages=[message("b-own", "B"), stolen],
            attachments=[attachment("att-b", "B", "b-own")],
        )
    error = caught.value
    assert isinstance(error, IntegrityError)
    assert (error.message_id, error.owner, error.claimant) == ("m1", "A", "B")
    assert error.collisions == (("m1", "A", "B"),)
    for named in ("'m1'", "'A'", "'B'", backend.describe()):
        assert named in str(error)
    assert "B's text" not in str(error)  # never message text
    # nothing of B, and A's message untouched
    assert backend.get_conversation("B") is None
    assert backend.get_messages("B") == []
    assert backend.get_attachments("B") == []
    assert [m.text for m in backend.get_messages("A")] == ["A's first", "A's own"]
    assert _table_counts(backend) == before
    # the owner may still save it, and unchanged it is skipped
    counts = repo.save_conversation(
        conversation=conversation("A"),
        messages=[message("m0", "A", text="A's first"), message("m1", "A", text="A's new")],
        attachments=[attachment("att-a", "A", "m1")],
    )
    assert (counts["messages"], counts["skipped_messages"]) == (1, 1)


def test_backend_calls_refuse_it_on_small_and_large_batches(backend: SQLBackend) -> None:
    _owned_by_a(backend)
    backend.save_conversation(conversation("B"))
    size = _large_batch(backend)
    for batch in (
        [message("m1", "B")],
        [message(f"b{i:05d}", "B") for i in range(size // 2)]
        + [message("m1", "B", text="stolen")]
        + [message(f"b{i:05d}", "B") for i in range(size // 2, size)],
    ):
        with pytest.raises(MessageOwnershipError) as caught:
            backend.save_messages(batch)
        assert (caught.value.message_id, caught.value.owner) == ("m1", "A")
        assert backend.get_messages("B") == []
        assert {m.message_id: m.text for m in backend.get_messages("A")}["m1"] == "A's own"
    # a transaction in which the call failed cannot be committed
    with pytest.raises(MessageOwnershipError), backend.transaction():
        backend.save_messages([message("b-kept?", "B")])
        backend.save_messages([message("m1", "B")])
    assert backend.get_messages("B") == []


def test_the_same_id_under_two_conversations_in_one_call_is_refused_before_writing(
    backend: SQLBackend,
) -> None:
    for cid in ("A", "B"):
        backend.save_conversation(conversation(cid))
    with pytest.raises(MessageOwnershipError) as caught:
        backend.save_messages([message("x", "A"), message("y", "A"), message("x", "B")])
    assert caught.value.listed_together
    assert (caught.value.message_id, caught.value.owner, caught.value.claimant) == ("x", "A", "B")
    assert "in one batch" in str(caught.value)
    assert backend.get_messages("A") == [] and backend.get_messages("B") == []


def test_ids_holding_nul_or_the_escape_marker_are_owned_too(backend: SQLBackend) -> None:
    """U+0000 (which SQLite's JSON functions cut at, and PostgreSQL stores escaped) and
    the escape marker U+2400, in message and conversation ids, on both batch paths."""
    owner, claimant = "A\x00", "\u2400B\\"
    for cid in (owner, claimant):
        backend.save_conversation(conversation(cid))
    backend.save_messages([message("m\x00x", owner), message("\u2400y\\", owner)])
    for stolen in ("m\x00x", "\u2400y\\"):
        for size in (1, _large_batch(backend)):
            batch = [message(f"n{i}\x00", claimant) for i in range(size - 1)]
            with pytest.raises(MessageOwnershipError) as caught:
                backend.save_messages([*batch, message(stolen, claimant)])
            assert caught.value.collisions == ((stolen, owner, claimant),)
    assert backend.get_messages(claimant) == []
    assert {m.message_id for m in backend.get_messages(owner)} == {"m\x00x", "\u2400y\\"}


def _bundles(consumed: list[int], layout: list[tuple[str, list[str]]]) -> Iterator[Bundle]:
    for index, (cid, message_ids) in enumerate(layout):
        consumed.append(index)
        yield (
            conversation(cid),
            [message(mid, cid, text=f"{cid}:{mid}") for mid in message_ids],
            [attachment(f"att-{cid}", cid, message_ids[0])],
        )


def test_save_many_rejects_the_bundle_keeps_the_rest_of_its_batch_and_stops(
    backend: SQLBackend,
) -> None:
    repo = _owned_by_a(backend)
    layout = [
        ("C0", ["c0-a", "c0-b"]),
        ("B", ["b-a", "m1"]),  # m1 is A's (stored)
        ("C2", ["c2-a"]),
        ("D", ["d-a", "c0-b"]),  # c0-b is C0's (listed earlier in the same batch)
        ("C4", ["c4-a", "c4-b"]),
        ("C5", ["c5-a"]),  # the next batch: never read
        ("C6", ["c6-a"]),
    ]
    consumed: list[int] = []
    with pytest.raises(MessageOwnershipError) as caught:
        repo.save_many(_bundles(consumed, layout), batch_size=5)
    error = caught.value
    assert error.rejected_bundles == ((1, "B"), (3, "D"))
    assert error.next_bundle == 5
    assert consumed == [0, 1, 2, 3, 4]
    assert {c[1:] for c in error.collisions} == {("A", "B"), ("C0", "D")}
    for named in (
        "2 bundles rejected",
        "bundle 1 (conversation 'B'): message 'm1' belongs to conversation 'A'",
        "bundle 3 (conversation 'D'): message 'c0-b' is listed by bundle 0 (conversation 'C0')",
        "from 5 on were not read",
        backend.describe(),
    ):
        assert named in str(error)
    assert error.saved is not None
    assert (error.saved["conversations"], error.saved["messages"]) == (3, 5)
    # the other bundles of the batch are committed, whole
    for cid, message_ids in (layout[0], layout[2], layout[4]):
        assert backend.get_conversation(cid) is not None
        assert [m.message_id for m in backend.get_messages(cid)] == sorted(message_ids)
        assert len(backend.get_attachments(cid)) == 1
    for cid in ("B", "D", "C5", "C6"):
        assert backend.get_conversation(cid) is None and backend.get_messages(cid) == []
    assert {m.message_id: m.text for m in backend.get_messages("A")}["m1"] == "A's own"
    assert {m.message_id: m.text for m in backend.get_messages("C0")}["c0-b"] == "C0:c0-b"


def test_save_many_with_every_bundle_rejected_saves_nothing_and_says_so(
    backend: SQLBackend,
) -> None:
    repo = _owned_by_a(backend)
    before = _table_counts(backend)
    consumed: list[int] = []
    with pytest.raises(MessageOwnershipError) as caught:
        repo.save_many(_bundles(consumed, [("B", ["m1"]), ("E", ["m0"])]), batch_size=10)
    assert caught.value.rejected_bundles == ((0, "B"), (1, "E"))
    assert caught.value.next_bundle == 2
    assert _table_counts(backend) == before


def test_concurrent_claim_waits_for_the_owner_and_is_refused(backend: SQLBackend) -> None:
    """Two transactions insert the same new message id under different conversations; the
    second is made to wait on the first's row (PostgreSQL) or lock (SQLite, DuckDB), then
    the first commits. Before the fix PostgreSQL's second upsert overwrote the first's
    message (or, with only a WHERE guard, silently skipped it)."""
    for cid in ("A", "B"):
        backend.save_conversation(conversation(cid))
    repo = StorageRepository(backend)

    def owner_work(db: SQLBackend) -> int:
        return db.save_messages([message("new-1", "A", text="A wrote first")])

    def claimant_work(_db: SQLBackend) -> Any:
        return repo.save_conversation(
            conversation=conversation("B"),
            messages=[message("b-1", "B"), message("new-1", "B", text="B came second")],
        )

    holder = Side(backend, owner_work, hold=True).opened()
    waiter = Side(backend, claimant_work)
    waiter.start()
    wait_until_blocked(backend, holder, waiter)
    holder.release()
    assert holder.finish() == 1
    with pytest.raises(MessageOwnershipError) as caught:
        waiter.finish()
    assert (caught.value.message_id, caught.value.owner, caught.value.claimant) == (
        "new-1",
        "A",
        "B",
    )
    assert [(m.message_id, m.text) for m in backend.get_messages("A")] == [
        ("new-1", "A wrote first")
    ]
    assert backend.get_messages("B") == []


class _GiveUp(Exception):
    pass


class _RollsBack(Side):
    """A held side whose transaction ends in a rollback instead of a commit."""

    def run(self) -> None:
        def work_then_give_up(db: SQLBackend) -> Any:
            self.result = self.work(db)
            self.done_work.set()
            if not self._release.wait(WAIT):
                raise AssertionError("the held transaction was never released")
            raise _GiveUp

        try:
            with self.backend.transaction():
                self.pid = getattr(
                    getattr(self.backend._state.conn, "info", None), "backend_pid", None
                )
                work_then_give_up(self.backend)
        except _GiveUp:
            pass
        except BaseException as exc:
            self.error = exc
        finally:
            self.done_work.set()


def test_a_claim_racing_an_owner_that_rolls_back_is_saved(backend: SQLBackend) -> None:
    """The other way round: the first writer rolls back, so the waiting one owns the id."""
    for cid in ("A", "B"):
        backend.save_conversation(conversation(cid))
    holder = _RollsBack(backend, lambda db: db.save_messages([message("new-2", "A")])).opened()
    waiter = Side(backend, lambda db: db.save_messages([message("new-2", "B")]))
    waiter.start()
    wait_until_blocked(backend, holder, waiter)
    holder.release()
    holder.finish()
    assert waiter.finish() == 1
    assert [m.message_id for m in backend.get_messages("B")] == ["new-2"]
    assert backend.get_messages("A") == []


SHARED_IDS = 60
"""Message ids every racing writer claims (3 bundles of 20)."""


def _race_bundles(cid: str) -> list[Bundle]:
    ids = [f"shared-{i:03d}" for i in range(SHARED_IDS)]
    return [
        (conversation(f"{cid}-{n}"), [message(mid, f"{cid}-{n}", text=cid) for mid in chunk], [])
        for n, chunk in enumerate(ids[i : i + 20] for i in range(0, SHARED_IDS, 20))
    ]


def _check_race_outcome(backend: SQLBackend, writers: list[str], errors: list[str]) -> None:
    """Every shared id is owned by exactly one bundle, whole, with its own text; every
    other bundle was refused whole with MessageOwnershipError."""
    owners: dict[str, str] = {}
    saved_bundles = 0
    for writer in writers:
        for conv, messages, _a in _race_bundles(writer):
            stored = backend.get_messages(conv.conversation_id)
            if backend.get_conversation(conv.conversation_id) is None:
                assert stored == []
                continue
            saved_bundles += 1
            assert [m.message_id for m in stored] == [m.message_id for m in messages]
            for m in stored:
                assert m.text == writer  # never another writer's text
                assert m.message_id not in owners
                owners[m.message_id] = conv.conversation_id
    assert len(owners) == SHARED_IDS
    assert saved_bundles == 3
    assert len(errors) == 3 * len(writers) - 3
    assert all(e == "MessageOwnershipError" for e in errors)


def _race_in_process(url_path: str, writer: str, start: Any, out: Any) -> None:
    backend = SQLiteBackend(url_path)
    repo = StorageRepository(backend)
    errors = []
    start.wait()
    for bundle_conv, messages, _a in _race_bundles(writer):
        try:
            repo.save_conversation(conversation=bundle_conv, messages=messages)
        except MessageOwnershipError as exc:
            errors.append(type(exc).__name__)
    backend.close()
    out.put(errors)


def test_two_processes_claiming_the_same_ids_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    SQLiteBackend(path).close()
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    writers = ["P", "Q"]
    processes = [
        context.Process(target=_race_in_process, args=(str(path), w, start, out)) for w in writers
    ]
    for process in processes:
        process.start()
    start.set()
    errors = [error for _ in processes for error in out.get(timeout=60)]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    with SQLiteBackend(path) as backend:
        _check_race_outcome(backend, writers, errors)


def test_threads_claiming_the_same_ids(backend: SQLBackend) -> None:
    writers = ["T", "U", "V"]
    barrier = threading.Barrier(len(writers))
    errors: list[str] = []

    def run(writer: str) -> None:
        repo = StorageRepository(backend)  # one each: a repository serialises its writes
        barrier.wait(WAIT)
        for conv, messages, _a in _race_bundles(writer):
            try:
                repo.save_conversation(conversation=conv, messages=messages)
            except MessageOwnershipError as exc:
                errors.append(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
        assert not thread.is_alive()
    _check_race_outcome(backend, writers, errors)


def test_unchanged_and_changed_messages_of_the_owner_still_count(backend: SQLBackend) -> None:
    """The guard leaves the owner's own updates alone, through every path."""
    backend.save_conversation(conversation("A"))
    size = _large_batch(backend)
    batch: list[MessageRecord] = [message(f"a{i:05d}", "A") for i in range(size)]
    assert backend.save_messages(batch) == size
    assert backend.save_messages(batch) == 0
    batch[7] = message("a00007", "A", text="changed")
    assert backend.save_messages(batch) == 1
    assert backend.save_messages([*batch[:3], batch[7]]) == 0
