"""StorageRepository: bundles, dedup counts, batches, pruning, both modes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from polylogue.errors import IntegrityError
from polylogue.storage.backends import SQLBackend, SQLiteBackend, default_db_path
from polylogue.storage.records import AttachmentRecord, MessageRecord, RunRecord
from polylogue.storage.repository import Bundle, BundleError, StorageRepository
from tests.records import attachment, bundle, conversation, message


def _counts(c: int, m: int, a: int, sc: int, sm: int, sa: int) -> dict[str, int]:
    return {
        "conversations": c,
        "messages": m,
        "attachments": a,
        "skipped_conversations": sc,
        "skipped_messages": sm,
        "skipped_attachments": sa,
    }


def test_save_conversation_counts_and_dedup(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    conv, messages, attachments = bundle("c1", 4, ("a1", "a2"))
    assert repo.save_conversation(
        conversation=conv, messages=messages, attachments=attachments
    ) == _counts(1, 4, 2, 0, 0, 0)
    assert repo.save_conversation(
        conversation=conv, messages=messages, attachments=attachments
    ) == _counts(0, 0, 0, 1, 4, 2)
    messages[1] = messages[1].model_copy(update={"text": "changed", "content_hash": "h2"})
    assert repo.save_conversation(
        conversation=conv, messages=messages, attachments=attachments
    ) == _counts(0, 1, 0, 1, 3, 2)
    assert backend.get_messages("c1") == messages


def test_a_ref_listed_twice_counts_once(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    conv, messages, attachments = bundle("c1", 2, ("a1", "a2"))
    listed = [*attachments, attachments[0]]  # three records, two refs
    first = repo.save_conversation(conversation=conv, messages=messages, attachments=listed)
    assert first == _counts(1, 2, 2, 0, 0, 0)
    again = repo.save_conversation(conversation=conv, messages=messages, attachments=listed)
    assert again == _counts(0, 0, 0, 1, 2, 2)
    assert len(backend.get_attachments("c1")) == 2


def test_reimport_without_an_attachment_prunes_its_ref(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    conv, messages, attachments = bundle("c1", 2, ("keep", "drop"))
    repo.save_conversation(conversation=conv, messages=messages, attachments=attachments)
    counts = repo.save_conversation(
        conversation=conv, messages=messages, attachments=attachments[:1]
    )
    assert counts["skipped_attachments"] == 1
    assert [a.attachment_id for a in backend.get_attachments("c1")] == ["keep"]
    repo.save_conversation(conversation=conv, messages=messages)
    assert backend.get_attachments("c1") == []


def test_failed_bundle_leaves_no_partial_rows(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    conv, messages, _ = bundle("c1", 3)
    broken = [attachment("a", "c1", "not-a-message-of-this-bundle")]
    with pytest.raises(IntegrityError):
        repo.save_conversation(conversation=conv, messages=messages, attachments=broken)
    assert backend.get_conversation("c1") is None
    assert backend.get_messages("c1") == []


def test_bundle_records_must_belong_together(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    conv = conversation("c1")
    with pytest.raises(BundleError, match=r"messages\[1\].*'c2'"):
        repo.save_conversation(conversation=conv, messages=[message("m1"), message("m2", "c2")])
    with pytest.raises(BundleError, match=r"attachments\[0\]"):
        repo.save_conversation(conversation=conv, attachments=[attachment("a", "c2")])
    assert backend.get_conversation("c1") is None


def test_bad_record_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="size_bytes"):
        AttachmentRecord(attachment_id="a", conversation_id="c", size_bytes=2**40 + 1)
    with pytest.raises(ValidationError, match="text"):
        MessageRecord(message_id="m", conversation_id="c", content_hash="h", text="bad \udc80")
    with pytest.raises(ValidationError, match="provider_name"):
        conversation("c", provider_name="9lives")
    with pytest.raises(ValidationError, match="message_id"):
        MessageRecord(message_id="   ", conversation_id="c", content_hash="h")
    with pytest.raises(ValidationError, match="provider_meta"):
        conversation("c", provider_meta={"when": object()})


def _bundles(n: int, attachments: bool = True) -> Iterator[Bundle]:
    for i in range(n):
        yield bundle(f"c{i:04d}", 5, ("shared", f"own{i}") if attachments else ())


def test_save_many_takes_a_generator_and_sums_counts(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    counts = repo.save_many(_bundles(23), batch_size=5)
    assert counts == _counts(23, 115, 46, 0, 0, 0)
    assert len(backend.list_conversations()) == 23
    assert len(backend.get_attachments("c0007")) == 2
    again = repo.save_many(_bundles(23), batch_size=7)
    assert again == _counts(0, 0, 0, 23, 115, 46)
    with pytest.raises(ValueError):
        repo.save_many([], batch_size=0)


def test_save_many_matches_one_by_one(tmp_path: Path) -> None:
    bulk = SQLiteBackend(tmp_path / "bulk.db")
    single = SQLiteBackend(tmp_path / "single.db")
    try:
        bulk_counts = StorageRepository(bulk).save_many(_bundles(12), batch_size=4)
        total = {k: 0 for k in bulk_counts}
        for b in _bundles(12):
            got = StorageRepository(single).save_conversation(
                conversation=b[0], messages=b[1], attachments=b[2]
            )
            for key in total:
                total[key] += got[key]  # type: ignore[literal-required]
        assert total == bulk_counts
        for i in range(12):
            cid = f"c{i:04d}"
            assert bulk.get_messages(cid) == single.get_messages(cid)
            assert bulk.get_attachments(cid) == single.get_attachments(cid)
    finally:
        bulk.close()
        single.close()


def test_save_many_failure_keeps_earlier_batches_only(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)

    def bundles() -> Iterator[Bundle]:
        yield from _bundles(6, attachments=False)
        conv, messages, _ = bundle("bad", 2)
        yield conv, messages, [attachment("x", "bad", "missing-message")]
        yield bundle("after", 2)

    with pytest.raises(IntegrityError) as info:
        repo.save_many(bundles(), batch_size=4)
    assert any("bundles 4..7" in note for note in info.value.__notes__)
    saved = {c.conversation_id for c in backend.list_conversations()}
    assert saved == {f"c{i:04d}" for i in range(4)}


def test_save_many_checks_a_batch_before_writing_it(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)

    def bundles() -> Iterator[Bundle]:
        yield bundle("ok", 1)
        yield conversation("c2"), [message("m", "other")], []

    with pytest.raises(BundleError, match="bundle 1"):
        repo.save_many(bundles(), batch_size=10)
    assert backend.list_conversations() == []


def test_duplicate_conversation_in_one_batch_uses_the_last_attachment_list(
    backend: SQLBackend,
) -> None:
    repo = StorageRepository(backend)
    first = bundle("c1", 2, ("old",))
    second = bundle("c1", 2, ("new",))
    repo.save_many([first, second], batch_size=10)
    assert [a.attachment_id for a in backend.get_attachments("c1")] == ["new"]


def test_record_run(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    run = RunRecord(run_id="r1", timestamp="2024-01-01T00:00:00Z", counts={"m": 1})
    repo.record_run(run)
    assert backend.get_runs() == [run]


def test_threads_share_one_repository(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                conv, messages, attachments = bundle(f"t{n}c{i}", 3, ("shared",))
                repo.save_conversation(
                    conversation=conv, messages=messages, attachments=attachments
                )
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(backend.list_conversations()) == 40


def test_default_mode_opens_the_default_database_with_identical_counts(
    data_home: Path, tmp_path: Path
) -> None:
    explicit = SQLiteBackend(tmp_path / "explicit.db")
    with StorageRepository() as default_repo:
        assert isinstance(default_repo.backend, SQLiteBackend)
        assert default_repo.backend.db_path == default_db_path()
        assert default_db_path().is_relative_to(data_home)
        for b in [*_bundles(3), bundle("c0001", 5, ("shared",))]:
            kwargs = {"conversation": b[0], "messages": b[1], "attachments": b[2]}
            assert default_repo.save_conversation(**kwargs) == StorageRepository(
                explicit
            ).save_conversation(**kwargs)
    explicit.close()
    assert default_db_path().exists()
