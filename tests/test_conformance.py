"""The behaviour every backend shares, written once over the ``backend`` fixture."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polylogue.errors import (
    DatabaseError,
    IntegrityError,
    MessageOwnershipError,
    TransactionError,
)
from polylogue.protocols import StorageBackend
from polylogue.storage.backends import SQLBackend
from polylogue.storage.records import MessageRecord, RunRecord, make_ref_id
from polylogue.storage.repository import StorageRepository
from tests.conftest import raw_scalar
from tests.records import attachment, conversation, message

TRICKY_TEXT = "naïve 日本語 emoji 😀👩‍👩‍👧 nul\x00byte \u202e rtl\ttab\nnewline 'quote\" %s %(x)s ?"
TRICKY_META: dict[str, Any] = {
    "source": "export-1",
    "nested": {"list": [1, 2.5, None, True, "x\x00y"], "empty": {}, "emoji": "🎉"},
    "empty_string": "",
    "unicode_key_é": "value",
    "big": 2**53 + 1,
}


def ref_count(backend: SQLBackend, attachment_id: str) -> Any:
    return raw_scalar(
        backend, "SELECT ref_count FROM attachments WHERE attachment_id = ?", attachment_id
    )


def test_is_a_storage_backend(backend: SQLBackend) -> None:
    assert isinstance(backend, StorageBackend)
    assert backend.schema_version() == backend.migration_runner().target_version


# -- round trips --------------------------------------------------------------------------


def test_conversation_round_trip_keeps_every_field(backend: SQLBackend) -> None:
    record = conversation(
        "c-ünï😀",
        title=TRICKY_TEXT,
        created_at="2024-02-29T23:59:59.123456+05:30",
        updated_at="2024-03-01T00:00:00Z",
        provider_meta=TRICKY_META,
        version=7,
    )
    assert backend.save_conversation(record) == 1
    assert backend.get_conversation(record.conversation_id) == record


def test_empty_strings_stay_distinct_from_none(backend: SQLBackend) -> None:
    empty = conversation("c-empty", title="", created_at="", updated_at=None, provider_meta={})
    backend.save_conversation(empty)
    got = backend.get_conversation("c-empty")
    assert got is not None
    assert got.title == "" and got.created_at == "" and got.updated_at is None
    assert got.provider_meta == {}
    none = conversation("c-none")
    backend.save_conversation(none)
    got_none = backend.get_conversation("c-none")
    assert got_none is not None and got_none.title is None and got_none.provider_meta is None


def test_message_round_trip_keeps_every_field(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    records = [
        message(
            "m-full",
            provider_message_id="pm-1",
            role="assistant",
            text=TRICKY_TEXT,
            timestamp="2024-01-01T00:00:00Z",
            provider_meta=TRICKY_META,
            version=3,
        ),
        message(
            "m-empty", provider_message_id="", role="", text="", timestamp="", provider_meta={}
        ),
        message("m-none", text=None, timestamp=None),
    ]
    assert backend.save_messages(records) == 3
    got = {m.message_id: m for m in backend.get_messages("c1")}
    assert got == {m.message_id: m for m in records}


def test_get_missing_returns_nothing(backend: SQLBackend) -> None:
    assert backend.get_conversation("nope") is None
    assert backend.get_messages("nope") == []
    assert backend.get_attachments("nope") == []


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.none() | texts,
    role=st.none() | texts,
    meta=st.none() | st.dictionaries(texts, json_values, max_size=4),
)
def test_message_round_trip_property(
    backend: SQLBackend, text: str | None, role: str | None, meta: dict[str, Any] | None
) -> None:
    backend.save_conversation(conversation("c-prop"))
    record = message("m-prop", "c-prop", text=text, role=role, provider_meta=meta)
    backend.save_messages([record])
    assert backend.get_messages("c-prop") == [record]


# -- upserts ------------------------------------------------------------------------------


def test_conversation_upsert_skips_unchanged_and_keeps_identity(backend: SQLBackend) -> None:
    original = conversation("c1", title="first", provider_meta={"source": "a"}, version=1)
    assert backend.save_conversation(original) == 1
    assert backend.save_conversation(original) == 0
    changed = original.model_copy(
        update={"title": "second", "provider_conversation_id": "other", "version": 9}
    )
    assert backend.save_conversation(changed) == 1
    got = backend.get_conversation("c1")
    assert got is not None
    assert got.title == "second"
    assert got.provider_conversation_id == original.provider_conversation_id
    assert got.version == 1
    for field, value in [
        ("created_at", "x"),
        ("updated_at", "y"),
        ("content_hash", "h2"),
        ("provider_meta", {"source": "b"}),
        ("title", None),
    ]:
        assert backend.save_conversation(changed.model_copy(update={field: value})) == 1, field
        changed = changed.model_copy(update={field: value})


def test_message_upsert_counts_only_inserted_or_changed(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    records = [message(f"m{i}") for i in range(5)]
    assert backend.save_messages(records) == 5
    assert backend.save_messages(records) == 0
    records[2] = records[2].model_copy(update={"text": "edited only"})
    records[4] = records[4].model_copy(update={"provider_meta": {"k": 1}})
    assert backend.save_messages(records) == 2
    assert backend.save_messages([]) == 0
    assert backend.get_messages("c1") == sorted(records, key=lambda m: m.message_id)


def test_messages_order_by_timestamp_null_first_then_id(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    records = [
        message("b", timestamp="2024-01-02"),
        message("a", timestamp="2024-01-02"),
        message("z", timestamp=None),
        message("y", timestamp=None),
        message("c", timestamp="2024-01-01"),
        message("B", timestamp="2024-01-02"),
    ]
    backend.save_messages(records)
    assert [m.message_id for m in backend.get_messages("c1")] == ["y", "z", "c", "B", "a", "b"]


# -- listing ------------------------------------------------------------------------------


def test_list_conversations_orders_filters_and_pages(backend: SQLBackend) -> None:
    specs = [
        ("a", "chatgpt", "export-1", "2024-01-03"),
        ("b", "claude", "export-1", "2024-01-05"),
        ("c", "chatgpt", "export-2", "2024-01-04"),
        ("d", "gemini", None, None),
        ("e", "chatgpt", "export-1", "2024-01-05"),
    ]
    for cid, provider, source, updated in specs:
        meta = {"source": source} if source else {"other": 1}
        backend.save_conversation(
            conversation(cid, provider_name=provider, provider_meta=meta, updated_at=updated)
        )
    ids = lambda records: [r.conversation_id for r in records]  # noqa: E731
    assert ids(backend.list_conversations()) == ["b", "e", "c", "a", "d"]
    assert ids(backend.list_conversations(provider="chatgpt")) == ["e", "c", "a"]
    assert ids(backend.list_conversations(source="export-1")) == ["b", "e", "a"]
    assert ids(backend.list_conversations(source="export-1", provider="chatgpt")) == ["e", "a"]
    assert ids(backend.list_conversations(limit=2)) == ["b", "e"]
    assert ids(backend.list_conversations(limit=2, offset=2)) == ["c", "a"]
    assert ids(backend.list_conversations(offset=4)) == ["d"]
    assert backend.list_conversations(limit=0) == []
    assert backend.list_conversations(source="missing") == []
    with pytest.raises(ValueError, match="limit"):
        backend.list_conversations(limit=-1)
    with pytest.raises(ValueError, match="offset"):
        backend.list_conversations(offset=-1)


# -- attachments --------------------------------------------------------------------------


def test_attachments_share_rows_and_count_refs(backend: SQLBackend) -> None:
    for cid in ("c1", "c2"):
        backend.save_conversation(conversation(cid))
        backend.save_messages([message(f"{cid}-m", cid)])
    first = attachment(
        "att",
        "c1",
        "c1-m",
        mime_type="image/png",
        size_bytes=10,
        path="/a.png",
        provider_meta={"w": 1},
    )
    assert backend.save_attachments([first]) == 1
    assert backend.save_attachments([first]) == 0  # same ref: nothing changes
    assert ref_count(backend, "att") == 1
    # A second conversation refers to it; NULLs must not erase what is known.
    second = attachment("att", "c2", None)
    assert backend.save_attachments([second]) == 1
    assert ref_count(backend, "att") == 2
    assert backend.get_attachments("c1") == [first]
    [got] = backend.get_attachments("c2")
    assert (got.conversation_id, got.message_id) == ("c2", None)
    assert (got.mime_type, got.size_bytes, got.path, got.provider_meta) == (
        "image/png",
        10,
        "/a.png",
        {"w": 1},
    )
    # A known value is updated by a new non-NULL one.
    assert backend.save_attachments([second.model_copy(update={"path": "/b.png"})]) == 0
    assert backend.get_attachments("c1")[0].path == "/b.png"
    assert ref_count(backend, "att") == 2


def test_same_attachment_twice_in_one_conversation(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    backend.save_messages([message("m1"), message("m2")])
    refs = [attachment("att", "c1", "m1"), attachment("att", "c1", "m2"), attachment("att", "c1")]
    assert backend.save_attachments(refs) == 3
    assert ref_count(backend, "att") == 3
    assert [a.message_id for a in backend.get_attachments("c1")] == [None, "m1", "m2"]


def test_prune_removes_other_refs_and_orphans(backend: SQLBackend) -> None:
    for cid in ("c1", "c2"):
        backend.save_conversation(conversation(cid))
    shared_c1, shared_c2 = attachment("shared", "c1"), attachment("shared", "c2")
    own = attachment("own", "c1")
    backend.save_attachments([shared_c1, shared_c2, own])
    assert ref_count(backend, "shared") == 2
    assert backend.prune_attachments("c1", [own.ref_id]) == 1
    assert ref_count(backend, "shared") == 1
    assert [a.attachment_id for a in backend.get_attachments("c1")] == ["own"]
    assert [a.attachment_id for a in backend.get_attachments("c2")] == ["shared"]
    assert backend.prune_attachments("c1", []) == 1
    assert ref_count(backend, "own") is None  # no refs left: the row is gone
    assert backend.prune_attachments("c1", []) == 0
    assert ref_count(backend, "shared") == 1
    with pytest.raises(TypeError):
        backend.prune_attachments("c1", "ref-abc")


def test_save_bundles_counts_as_the_three_calls_would(backend: SQLBackend) -> None:
    """One call for a batch's conversations, messages and attachments (the repository's
    path; PostgreSQL pipelines it): the same counts and rows as the separate calls."""
    c1, c2 = conversation("c1"), conversation("c2")
    messages = [message("m1", "c1"), message("m2", "c1"), message("m3", "c2")]
    shared = [attachment("shared", "c1", "m1"), attachment("shared", "c2")]
    keep = {"c1": [shared[0].ref_id], "c2": [shared[1].ref_id]}
    assert backend.save_bundles([c1, c2], messages, shared, keep) == (2, 3, 2)
    assert ref_count(backend, "shared") == 2
    assert backend.save_bundles([c1, c2], messages, shared, keep) == (0, 0, 0)
    assert ref_count(backend, "shared") == 2
    changed = message("m2", "c1", text="edited")
    own = attachment("own", "c1", "m2")
    # c2 now lists nothing: its ref goes, the shared row stays for c1.
    assert backend.save_bundles(
        [c1], [changed], [own], {"c1": [shared[0].ref_id, own.ref_id], "c2": []}
    ) == (0, 1, 1)
    assert ref_count(backend, "shared") == 1
    assert ref_count(backend, "own") == 1
    assert backend.get_attachments("c2") == []
    assert [m.text for m in backend.get_messages("c1")] == ["text of m1", "edited"]
    # A message of another conversation refuses the whole call; nothing of it is written.
    with pytest.raises(MessageOwnershipError):
        backend.save_bundles(
            [conversation("c3")], [message("m9", "c3"), message("m3", "c3")], [], {"c3": []}
        )
    assert backend.get_conversation("c3") is None
    assert backend.get_messages("c3") == []


def test_ref_ids_follow_the_documented_formula(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    backend.save_messages([message("m1")])
    record = attachment("att", "c1", "m1")
    backend.save_attachments([record])
    assert record.ref_id == make_ref_id("att", "c1", "m1")
    stored = raw_scalar(
        backend, "SELECT ref_id FROM attachment_refs WHERE attachment_id = ?", "att"
    )
    assert stored == record.ref_id


def test_attachment_for_missing_message_is_refused_whole(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    good = attachment("good", "c1")
    bad = attachment("bad", "c1", "no-such-message")
    with pytest.raises(IntegrityError, match="save_attachments"):
        backend.save_attachments([good, bad])
    assert backend.get_attachments("c1") == []
    assert ref_count(backend, "good") is None


# -- delete -------------------------------------------------------------------------------


def test_delete_conversation_removes_children_and_keeps_counts(backend: SQLBackend) -> None:
    for cid in ("c1", "c2"):
        backend.save_conversation(conversation(cid))
        backend.save_messages([message(f"{cid}-m", cid)])
        backend.save_attachments(
            [attachment("shared", cid, f"{cid}-m"), attachment(f"own-{cid}", cid)]
        )
    assert backend.delete_conversation("c1") is True
    assert backend.get_conversation("c1") is None
    assert backend.get_messages("c1") == []
    assert backend.get_attachments("c1") == []
    assert ref_count(backend, "shared") == 1
    assert ref_count(backend, "own-c1") is None
    assert [a.attachment_id for a in backend.get_attachments("c2")] == ["own-c2", "shared"]
    assert len(backend.get_messages("c2")) == 1
    assert backend.delete_conversation("c1") is False


# -- transactions -------------------------------------------------------------------------


def test_transaction_commits_and_rolls_back(backend: SQLBackend) -> None:
    with backend.transaction():
        backend.save_conversation(conversation("kept"))
    with pytest.raises(RuntimeError), backend.transaction():
        backend.save_conversation(conversation("lost"))
        raise RuntimeError("boom")
    assert backend.get_conversation("kept") is not None
    assert backend.get_conversation("lost") is None
    backend.begin()
    backend.save_conversation(conversation("rolled"))
    backend.rollback()
    assert backend.get_conversation("rolled") is None
    assert not backend.in_transaction


def test_bundles_saved_in_a_caller_transaction_wait_for_its_end(backend: SQLBackend) -> None:
    # A save inside a caller's transaction must not commit it (PostgreSQL sends COMMIT
    # with a bundle's statements only when the save has a transaction of its own).
    repo = StorageRepository(backend)
    with pytest.raises(RuntimeError), backend.transaction():
        backend.save_conversation(conversation("before"))
        repo.save_conversation(
            conversation=conversation("b1"),
            messages=[message("m1", "b1")],
            attachments=[attachment("a1", "b1")],
        )
        repo.save_many([(conversation("b2"), [message("m2", "b2")], [])])
        raise RuntimeError("boom")
    for cid in ("before", "b1", "b2"):
        assert backend.get_conversation(cid) is None
    assert backend.get_messages("b1") == []
    assert ref_count(backend, "a1") is None
    counts = repo.save_conversation(conversation=conversation("b1"), messages=[message("m1", "b1")])
    assert (counts["conversations"], counts["messages"]) == (1, 1)
    assert [m.message_id for m in backend.get_messages("b1")] == ["m1"]
    assert not backend.in_transaction


def test_commit_or_rollback_without_begin_is_an_error(backend: SQLBackend) -> None:
    with pytest.raises(TransactionError):
        backend.commit()
    with pytest.raises(TransactionError):
        backend.rollback()


def test_nested_rollback_keeps_outer_work(savepoint_backend: SQLBackend) -> None:
    backend = savepoint_backend
    with backend.transaction():
        backend.save_conversation(conversation("outer"))
        backend.begin()
        backend.save_conversation(conversation("inner"))
        backend.rollback()
        with pytest.raises(ValueError), backend.transaction():
            backend.save_conversation(conversation("inner-2"))
            raise ValueError
        with backend.transaction():
            backend.save_conversation(conversation("inner-kept"))
    assert backend.get_conversation("outer") is not None
    assert backend.get_conversation("inner") is None
    assert backend.get_conversation("inner-2") is None
    assert backend.get_conversation("inner-kept") is not None


def test_outer_rollback_undoes_committed_savepoints(savepoint_backend: SQLBackend) -> None:
    backend = savepoint_backend
    backend.begin()
    with backend.transaction():
        backend.save_conversation(conversation("inner"))
    backend.rollback()
    assert backend.get_conversation("inner") is None


def test_failed_call_poisons_its_transaction(backend: SQLBackend) -> None:
    """A failed call's partial work can never be committed: commit() refuses."""
    backend.begin()
    backend.save_conversation(conversation("c1"))
    with pytest.raises(IntegrityError):
        backend.save_messages([message("m-good"), message("m-orphan", "no-such-conversation")])
    with pytest.raises(TransactionError, match="save_messages failed"):
        backend.commit()
    assert not backend.in_transaction
    assert backend.get_conversation("c1") is None
    assert backend.get_messages("c1") == []
    with pytest.raises(IntegrityError), backend.transaction():  # the usual form
        backend.save_conversation(conversation("c2"))
        backend.save_messages([message("m-orphan", "no-such-conversation")])
    assert backend.get_conversation("c2") is None


def test_nested_transaction_recovers_from_a_failed_call(savepoint_backend: SQLBackend) -> None:
    backend = savepoint_backend
    with backend.transaction():
        backend.save_conversation(conversation("c1"))
        good, orphan = message("m-good"), message("m-orphan", "no-such-conversation")
        with pytest.raises(IntegrityError), backend.transaction():
            backend.save_messages([good, orphan])
        backend.save_messages([message("m-after")])
        backend.begin()
        with pytest.raises(IntegrityError):
            backend.save_messages([orphan])
        backend.rollback()  # rolling the failed level back clears it
    assert [m.message_id for m in backend.get_messages("c1")] == ["m-after"]


def test_failed_inner_level_refuses_only_its_own_commit(savepoint_backend: SQLBackend) -> None:
    backend = savepoint_backend
    backend.begin()
    backend.save_conversation(conversation("outer"))
    backend.begin()
    backend.save_conversation(conversation("inner"))
    with pytest.raises(IntegrityError):
        backend.save_messages([message("m", "ghost")])
    with pytest.raises(TransactionError):
        backend.commit()  # the inner level: rolled back, outer goes on
    assert backend.in_transaction
    backend.commit()
    assert backend.get_conversation("outer") is not None
    assert backend.get_conversation("inner") is None


def test_write_outside_transaction_is_atomic(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    with pytest.raises(IntegrityError) as info:
        backend.save_messages([message("m1"), message("m2", "missing-conversation")])
    assert "save_messages" in str(info.value)
    assert backend.get_messages("c1") == []
    assert not backend.in_transaction


def test_transactions_are_per_thread(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("base"))
    seen: dict[str, Any] = {}
    started, checked = threading.Event(), threading.Event()

    def other() -> None:
        started.wait(10)
        seen["in_transaction"] = backend.in_transaction
        if backend.dialect != "sqlite" or getattr(backend, "db_path", None) is not None:
            seen["uncommitted"] = backend.get_conversation("pending")
        checked.set()

    thread = threading.Thread(target=other)
    thread.start()
    backend.begin()
    backend.save_conversation(conversation("pending"))
    started.set()
    if getattr(backend, "db_path", "x") is None and backend.dialect == "sqlite":
        # a memory database serialises transactions: the other thread waits for us
        backend.commit()
        checked.wait(10)
    else:
        checked.wait(10)
        backend.commit()
    thread.join(10)
    assert seen["in_transaction"] is False
    assert seen.get("uncommitted") is None
    assert backend.get_conversation("pending") is not None


def test_threads_write_concurrently(backend: SQLBackend) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                cid = f"t{n}-c{i}"
                with backend.transaction():
                    backend.save_conversation(conversation(cid))
                    backend.save_messages([message(f"{cid}-m{j}", cid) for j in range(3)])
                    backend.save_attachments([attachment("shared", cid)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(backend.list_conversations()) == 60
    assert all(len(backend.get_messages(f"t{n}-c{i}")) == 3 for n in range(4) for i in range(15))
    assert ref_count(backend, "shared") == 60


# -- runs and stats -----------------------------------------------------------------------


def test_runs_round_trip_newest_first(backend: SQLBackend) -> None:
    runs = [
        RunRecord(
            run_id="r1",
            timestamp="2024-01-01T00:00:00Z",
            plan_snapshot={"a": [1]},
            counts={"messages": 3},
            drift={"x": None},
            indexed=True,
            duration_ms=12,
        ),
        RunRecord(run_id="r2", timestamp="2024-01-02T00:00:00Z"),
        RunRecord(run_id="r3", timestamp="2024-01-03T00:00:00Z", indexed=False, duration_ms=0),
    ]
    for run in runs:
        backend.record_run(run)
    assert backend.get_runs() == runs[::-1]
    assert backend.get_runs(limit=2) == [runs[2], runs[1]]
    replaced = runs[0].model_copy(update={"duration_ms": 99, "timestamp": "2025-01-01"})
    backend.record_run(replaced)
    assert backend.get_runs(limit=1) == [replaced]
    assert len(backend.get_runs()) == 3


def test_stats_counts_per_provider_and_month(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1", provider_name="chatgpt"))
    backend.save_conversation(conversation("c2", provider_name="claude"))
    backend.save_conversation(conversation("c3", provider_name="chatgpt"))
    backend.save_messages(
        [
            message("m1", "c1", timestamp="2024-01-05T10:00:00Z"),
            message("m2", "c1", timestamp="2024-02-05T10:00:00Z"),
            message("m3", "c3", timestamp="2024-01-09T10:00:00Z"),
            message("m4", "c2", timestamp=None),
        ]
    )
    backend.save_attachments([attachment("a", "c1"), attachment("a", "c2")])
    summary = backend.stats()
    chars = len("text of m1")  # every message text here is as long
    assert summary["providers"] == [
        {
            "provider_name": "chatgpt",
            "conversations": 2,
            "messages": 3,
            "attachments": 1,
            "text_chars": 3 * chars,
            "first_message_at": "2024-01-05T10:00:00Z",
            "last_message_at": "2024-02-05T10:00:00Z",
        },
        {
            "provider_name": "claude",
            "conversations": 1,
            "messages": 1,
            "attachments": 1,
            "text_chars": chars,
            "first_message_at": None,
            "last_message_at": None,
        },
    ]
    assert summary["messages_per_month"] == [
        {"provider_name": "chatgpt", "month": "2024-01", "messages": 2},
        {"provider_name": "chatgpt", "month": "2024-02", "messages": 1},
        {"provider_name": "claude", "month": None, "messages": 1},
    ]


def test_count_rows_counts_every_table(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    backend.save_conversation(conversation("c2"))
    backend.save_messages([message("m1", "c1"), message("m2", "c2"), message("m3", "c2")])
    backend.save_attachments([attachment("a", "c1"), attachment("a", "c2"), attachment("b", "c2")])
    backend.record_run(RunRecord(run_id="r1", timestamp="2024-01-01"))
    assert backend.count_rows() == {
        "conversations": 2,
        "messages": 3,
        "attachments": 2,
        "attachment_refs": 3,
        "runs": 1,
    }


def test_analyze_runs_outside_transactions_only(backend: SQLBackend) -> None:
    backend.save_conversation(conversation("c1"))
    backend.save_messages([message("m1", "c1")])
    backend.analyze()
    assert [m.message_id for m in backend.get_messages("c1")] == ["m1"]
    with pytest.raises(TransactionError, match="outside a transaction"), backend.transaction():
        backend.analyze()
    assert backend.count_rows()["messages"] == 1


# -- keyset pages (export) ----------------------------------------------------------------

# Ids whose code-point order differs from a natural-language collation's: case, accents,
# punctuation, digits, and a character beyond the BMP.
KEYSET_IDS = ["B", "a", "a-b", "a_b", "aB", "ab", "é", "z", "Z1", "10", "9", "😀", "ﬀ", "a b"]


def test_pages_by_id_follow_code_point_order_without_gaps(backend: SQLBackend) -> None:
    backend.save_conversations([conversation(cid) for cid in KEYSET_IDS])
    seen: list[str] = []
    after = ""
    while page := backend.list_conversations_by_id(after, limit=3):
        assert len(page) <= 3
        seen += [c.conversation_id for c in page]
        after = page[-1].conversation_id
    assert seen == sorted(KEYSET_IDS)  # Python compares str by code point
    assert backend.list_conversations_by_id(after, limit=3) == []
    assert backend.list_conversations_by_id("a", limit=1)[0] == backend.get_conversation("a b")


def test_id_ranges_give_each_conversations_rows_in_its_own_order(backend: SQLBackend) -> None:
    ids = ["a", "a b", "B", "é", "😀"]
    backend.save_conversations([conversation(cid) for cid in ids])
    for n, cid in enumerate(ids):
        stamps = [None, "2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"][: n + 1]
        backend.save_messages(
            [message(f"{cid}/m{i}", cid, timestamp=ts) for i, ts in enumerate(stamps)]
        )
        backend.save_attachments(
            [attachment("shared", cid), attachment(f"own-{cid}", cid, f"{cid}/m0")]
        )
    in_order = sorted(ids)  # code points: "B" < "a" < "a b" < "é" < "😀"
    for after, last in [("", in_order[-1]), ("B", "é"), ("a", "a b"), ("😀", "😀")]:
        inside = [cid for cid in in_order if after < cid <= last]
        assert backend.list_messages_in_id_range(after, last) == [
            m for cid in inside for m in backend.get_messages(cid)
        ]
        assert backend.list_attachments_in_id_range(after, last) == [
            a for cid in inside for a in backend.get_attachments(cid)
        ]


def test_pages_by_id_filter_by_provider_and_since(backend: SQLBackend) -> None:
    backend.save_conversations(
        [
            conversation("c1", provider_name="claude", updated_at="2024-01-01T00:00:00Z"),
            conversation("c2", provider_name="chatgpt", updated_at="2024-06-01T00:00:00Z"),
            conversation("c3", provider_name="claude", updated_at="2024-06-02T00:00:00Z"),
            conversation("c4", provider_name="claude", updated_at=None),
        ]
    )

    def ids(**filters: Any) -> list[str]:
        return [c.conversation_id for c in backend.list_conversations_by_id(**filters)]

    assert ids() == ["c1", "c2", "c3", "c4"]
    assert ids(provider="claude") == ["c1", "c3", "c4"]
    assert ids(since="2024-06-01") == ["c2", "c3"]
    assert ids(provider="claude", since="2024-06-01") == ["c3"]
    with pytest.raises(ValueError, match="limit"):
        backend.list_conversations_by_id(limit=0)


# -- input checks -------------------------------------------------------------------------


def test_wrong_record_types_are_refused_before_writing(backend: SQLBackend) -> None:
    with pytest.raises(TypeError):
        backend.save_conversation("c1")  # type: ignore[arg-type]
    backend.save_conversation(
        {
            "conversation_id": "from-dict",
            "provider_name": "x",  # type: ignore[arg-type]
            "provider_conversation_id": "p",
            "content_hash": "h",
        }
    )
    assert backend.get_conversation("from-dict") is not None
    with pytest.raises(Exception, match="message_id"):
        backend.save_messages([{"conversation_id": "from-dict", "content_hash": "h"}])  # type: ignore[list-item]
    assert backend.get_messages("from-dict") == []


def test_errors_name_the_operation_and_database(backend: SQLBackend) -> None:
    with pytest.raises(DatabaseError) as info:
        backend.save_messages(
            [MessageRecord(message_id="m", conversation_id="ghost", content_hash="h")]
        )
    text = str(info.value)
    assert "save_messages failed on" in text
    assert backend.describe() in text
