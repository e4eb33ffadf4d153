"""DuckDB skips the writes of a bundle stored as it is (backends/duckdb/unchanged.py).

The skip must never lose a change: every field each upsert may change, every ref the
prune or the insert would touch, and every foreign message takes the full path. The
shared counting rules are in test_conformance.py; these tests run the same saves with a
record of which queries ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from polylogue.errors import MessageOwnershipError
from polylogue.storage.backends.duckdb.backend import DuckDBBackend
from polylogue.storage.queries import LIST_QUERIES, QUERIES, SPLIT_UPSERT_QUERIES
from polylogue.storage.records import AttachmentRecord, ConversationRecord, MessageRecord
from polylogue.storage.repository import StorageRepository
from tests.records import attachment, bundle, conversation, message

Bundle = tuple[ConversationRecord, list[MessageRecord], list[AttachmentRecord]]
WRITES = (
    {name for name, spec in {**QUERIES, **SPLIT_UPSERT_QUERIES}.items() if spec.bulk}
    | set(LIST_QUERIES)
    | {"prune_attachment_refs"}
)
"""Every query that writes rows (the bulk writes and the prunes)."""


class RecordingQueries:
    """The backend's loaded queries, noting the name of each one called."""

    def __init__(self, queries: Any) -> None:
        self._queries = queries
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        query = getattr(self._queries, name)
        if not callable(query):
            return query
        called = self.called

        class Recorded:
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                called.append(name)
                return query(*args, **kwargs)

            def __getattr__(self, attribute: str) -> Any:
                return getattr(query, attribute)

        return Recorded()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[DuckDBBackend, RecordingQueries]]:
    backend = DuckDBBackend(tmp_path / "archive.duckdb")
    recording = RecordingQueries(backend.queries)
    backend.queries = recording
    try:
        yield backend, recording
    finally:
        backend.close()


def rich_bundle() -> Bundle:
    conv, messages, _ = bundle("c1", 3)
    conv = conv.model_copy(update={"title": "t", "created_at": "2024", "provider_meta": {"n": 1}})
    messages[1] = messages[1].model_copy(update={"role": "user", "provider_meta": {"k": "v"}})
    atts = [
        attachment("a1", "c1", messages[0].message_id, mime_type="image/png", size_bytes=10),
        attachment("a2", "c1", None, path="/x", provider_meta={"p": 1}),
    ]
    return conv, messages, atts


def save(repo: StorageRepository, saved: Bundle) -> dict[str, int]:
    conv, messages, atts = saved
    return dict(repo.save_conversation(conversation=conv, messages=messages, attachments=atts))


def test_a_bundle_stored_as_it_is_runs_no_write(
    db: tuple[DuckDBBackend, RecordingQueries],
) -> None:
    backend, recording = db
    repo = StorageRepository(backend)
    saved = rich_bundle()
    save(repo, saved)
    recording.called.clear()
    counts = save(repo, saved)
    assert not WRITES & set(recording.called), recording.called
    assert (counts["messages"], counts["skipped_messages"]) == (0, 3)
    assert (counts["attachments"], counts["skipped_attachments"]) == (0, 2)
    # NULL never overwrites a stored attachment value: still nothing to write
    conv, messages, atts = saved
    bare = [attachment(a.attachment_id, "c1", a.message_id) for a in atts]
    recording.called.clear()
    save(repo, (conv, messages, bare))
    assert not WRITES & set(recording.called)
    assert backend.get_attachments("c1") == atts


def _edit_conversation(**fields: Any) -> Callable[[Bundle], Bundle]:
    return lambda b: (b[0].model_copy(update=fields), b[1], b[2])


def _edit_message(index: int, **fields: Any) -> Callable[[Bundle], Bundle]:
    def edit(b: Bundle) -> Bundle:
        messages = list(b[1])
        messages[index] = messages[index].model_copy(update=fields)
        return b[0], messages, b[2]

    return edit


def _edit_attachment(index: int, **fields: Any) -> Callable[[Bundle], Bundle]:
    def edit(b: Bundle) -> Bundle:
        atts = list(b[2])
        atts[index] = atts[index].model_copy(update=fields)
        return b[0], b[1], atts

    return edit


EDITS: dict[str, Callable[[Bundle], Bundle]] = {
    "conversation title": _edit_conversation(title="new"),
    "conversation title to NULL": _edit_conversation(title=None),
    "conversation created_at": _edit_conversation(created_at="2025"),
    "conversation updated_at": _edit_conversation(updated_at="2025-01-01T00:00:00"),
    "conversation content_hash": _edit_conversation(content_hash="other"),
    "conversation provider_meta": _edit_conversation(provider_meta={"n": 2}),
    "conversation provider_meta 1 -> 1.0": _edit_conversation(provider_meta={"n": 1.0}),
    "message role": _edit_message(1, role="assistant"),
    "message text": _edit_message(0, text="edited"),
    "message text to NULL": _edit_message(0, text=None),
    "message timestamp": _edit_message(2, timestamp="2030-01-01T00:00:00"),
    "message content_hash": _edit_message(0, content_hash="other"),
    "message provider_meta": _edit_message(1, provider_meta={"k": "w"}),
    "message added": lambda b: (b[0], [*b[1], message("c1-new", "c1")], b[2]),
    "attachment mime_type": _edit_attachment(0, mime_type="image/jpeg"),
    "attachment size_bytes": _edit_attachment(0, size_bytes=11),
    "attachment path": _edit_attachment(1, path="/y"),
    "attachment provider_meta": _edit_attachment(1, provider_meta={"p": 2}),
    "attachment moved to another message": _edit_attachment(0, message_id="c1-m2"),
    "attachment dropped": lambda b: (b[0], b[1], b[2][:1]),
    "attachment added": lambda b: (b[0], b[1], [*b[2], attachment("a3", "c1", None)]),
    "attachments all dropped": lambda b: (b[0], b[1], []),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=list(EDITS))
def test_every_change_is_written(
    db: tuple[DuckDBBackend, RecordingQueries], edit: Callable[[Bundle], Bundle]
) -> None:
    backend, _ = db
    repo = StorageRepository(backend)
    saved = rich_bundle()
    save(repo, saved)
    conv, messages, atts = edit(saved)
    save(repo, (conv, messages, atts))
    assert backend.get_conversation("c1") == conv
    assert backend.get_messages("c1") == sorted(messages, key=lambda m: m.timestamp or "")
    assert sorted(backend.get_attachments("c1"), key=lambda a: a.ref_id) == sorted(
        atts, key=lambda a: a.ref_id
    )


def test_a_foreign_message_in_a_stored_bundle_is_refused(
    db: tuple[DuckDBBackend, RecordingQueries],
) -> None:
    backend, _ = db
    repo = StorageRepository(backend)
    save(repo, rich_bundle())
    other = (conversation("c2"), [message("c2-m0", "c2")], [])
    save(repo, other)
    claimed = message("c1-m0", "c2", text="text of c1-m0", content_hash="hash-c1-m0")
    with pytest.raises(MessageOwnershipError):
        save(repo, (other[0], [*other[1], claimed], []))
    assert [m.message_id for m in backend.get_messages("c2")] == ["c2-m0"]


def test_a_record_without_a_list_of_refs_is_saved(
    db: tuple[DuckDBBackend, RecordingQueries],
) -> None:
    """``save_bundles`` without the conversation's ref list only adds refs: a record of a
    stored bundle whose ref is new is written."""
    backend, _ = db
    repo = StorageRepository(backend)
    conv, messages, atts = rich_bundle()
    save(repo, (conv, messages, atts))
    added = attachment("a9", "c1", None, mime_type="text/plain")
    counts = backend.save_bundles([conv], messages, [added], {})
    assert counts == (0, 0, 1)
    assert {a.attachment_id for a in backend.get_attachments("c1")} == {"a1", "a2", "a9"}
