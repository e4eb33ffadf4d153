"""Property-based round trips on every backend (issue 8, the permanent suite).

For generated batches of bundles (unicode and U+0000 everywhere, JSON metadata at the
edges of what validation accepts, message ids repeated within a batch):

- saving then reading gives back every record unchanged (the last occurrence of a
  repeated id);
- saving the same batch again reports everything skipped and changes nothing;
- saving a modified batch reports exactly the rows that changed, on every backend alike.

Each backend runs a fixed, derandomised set of examples (CI is reproducible); one
database serves all examples of a test, each example in a namespace of its own.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polylogue.storage.backends import SQLBackend
from polylogue.storage.records import (
    MAX_JSON_DEPTH,
    MAX_VERSION,
    MIN_VERSION,
    ConversationRecord,
    MessageRecord,
)
from polylogue.storage.repository import Bundle, StorageRepository

EXAMPLES = 25
"""Examples per backend and test: with four backends about 10 s in all on a 2-core machine."""

PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text: any code point but lone surrogates (refused by validation), U+0000 and the
# PostgreSQL escape marker U+2400 made likely.
characters = st.characters(blacklist_categories=("Cs",)) | st.sampled_from(
    ["\x00", "\u2400", "\\", "'", '"', "%", "\u00e9", "\u0301", "😀"]
)
texts = st.text(characters, max_size=30)
ids = st.text(characters, min_size=1, max_size=12).filter(lambda s: s.strip() != "")
floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not (f == 0.0 and math.copysign(1.0, f) < 0)  # -0.0 is refused
)
json_leaf = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | floats | texts
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
metas = st.none() | st.dictionaries(texts, json_values, max_size=4)
# A conversation's source is indexed and may hold no U+0000 (validation refuses it).
conversation_metas = metas.map(lambda m: {**m, "source": "src"} if m and "source" in m else m)
versions = st.integers(min_value=MIN_VERSION, max_value=MAX_VERSION)

_namespaces = itertools.count()


@st.composite
def batches(draw: st.DrawFn) -> list[Bundle]:
    """1-3 bundles of 0-5 messages; message ids may repeat within a bundle (the last
    occurrence is the one stored); ids differ between bundles (a message id belongs to
    one conversation)."""
    bundles: list[Bundle] = []
    for c in range(draw(st.integers(1, 3))):
        cid = f"{c}:{draw(ids)}"
        conv = ConversationRecord(
            conversation_id=cid,
            provider_name=draw(st.sampled_from(["chatgpt", "claude", "gemini-2"])),
            provider_conversation_id=draw(ids),
            title=draw(st.none() | texts),
            created_at=draw(st.none() | texts),
            updated_at=draw(st.none() | texts),
            content_hash=draw(ids),
            provider_meta=draw(conversation_metas),
            version=draw(versions),
        )
        local_ids = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
        messages = [
            MessageRecord(
                message_id=f"{c}:{draw(st.sampled_from(local_ids))}",
                conversation_id=cid,
                provider_message_id=draw(st.none() | texts),
                role=draw(st.none() | texts),
                text=draw(st.none() | texts),
                timestamp=draw(st.none() | texts),
                content_hash=draw(ids),
                provider_meta=draw(metas),
                version=draw(versions),
            )
            for _ in range(draw(st.integers(0, 5)))
        ]
        bundles.append((conv, messages, []))
    return bundles


def _with(record: Any, **changes: Any) -> Any:
    """``record`` with ``changes``, validated again (``model_copy`` would not)."""
    return type(record).model_validate(record.model_dump() | changes)


def _in_namespace(bundles: list[Bundle], prefix: str) -> list[Bundle]:
    """The same batch with every id moved under ``prefix`` (one database, many examples)."""
    moved: list[Bundle] = []
    for conv, messages, atts in bundles:
        cid = prefix + conv.conversation_id
        moved.append(
            (
                _with(conv, conversation_id=cid),
                [_with(m, message_id=prefix + m.message_id, conversation_id=cid) for m in messages],
                atts,
            )
        )
    return moved


def _expected(bundles: list[Bundle]) -> dict[str, Any]:
    """What the database must hold: each conversation and message id with its last values."""
    conversations = {c.conversation_id: c for c, _m, _a in bundles}
    messages: dict[str, dict[str, MessageRecord]] = {cid: {} for cid in conversations}
    for conv, msgs, _atts in bundles:
        for m in msgs:
            messages[conv.conversation_id][m.message_id] = m
    return {"conversations": conversations, "messages": messages}


def _stored(backend: SQLBackend, expected: dict[str, Any]) -> dict[str, Any]:
    conversations = {cid: backend.get_conversation(cid) for cid in expected["conversations"]}
    messages = {
        cid: {m.message_id: m for m in backend.get_messages(cid)} for cid in expected["messages"]
    }
    return {"conversations": conversations, "messages": messages}


def _distinct(bundles: list[Bundle]) -> tuple[int, int]:
    expected = _expected(bundles)
    return len(expected["conversations"]), sum(len(m) for m in expected["messages"].values())


@PROPERTY_SETTINGS
@given(bundles=batches())
def test_save_then_get_gives_back_what_was_saved_and_a_resave_skips_all(
    backend: SQLBackend, bundles: list[Bundle]
) -> None:
    bundles = _in_namespace(bundles, f"e{next(_namespaces)}/")
    repo = StorageRepository(backend)
    n_conversations, n_messages = _distinct(bundles)
    counts = repo.save_many(bundles)
    assert counts == {
        "conversations": n_conversations,
        "messages": n_messages,
        "attachments": 0,
        "skipped_conversations": 0,
        "skipped_messages": 0,
        "skipped_attachments": 0,
    }
    expected = _expected(bundles)
    assert _stored(backend, expected) == expected
    again = repo.save_many(bundles)
    assert again == {
        "conversations": 0,
        "messages": 0,
        "attachments": 0,
        "skipped_conversations": n_conversations,
        "skipped_messages": n_messages,
        "skipped_attachments": 0,
    }
    assert _stored(backend, expected) == expected


@PROPERTY_SETTINGS
@given(
    bundles=batches(),
    edits=st.lists(st.tuples(st.integers(0, 99), texts, st.none() | texts), max_size=6),
    deep=st.booleans(),
)
def test_counts_equal_the_rows_that_changed(
    backend: SQLBackend,
    bundles: list[Bundle],
    edits: list[tuple[int, str, str | None]],
    deep: bool,
) -> None:
    bundles = _in_namespace(bundles, f"f{next(_namespaces)}/")
    repo = StorageRepository(backend)
    repo.save_many(bundles)
    before = _expected(bundles)
    # Edit some messages (text, role) and maybe one conversation's metadata; an edit may
    # repeat the stored values, which is no change.
    edited = [(c, list(ms), a) for c, ms, a in bundles]
    flat = [(i, j) for i, (_c, ms, _a) in enumerate(edited) for j in range(len(ms))]
    for pick, text, role in edits:
        if flat:
            i, j = flat[pick % len(flat)]
            edited[i][1][j] = _with(edited[i][1][j], text=text, role=role)
    if deep:
        nested: Any = "bottom"
        for _ in range(MAX_JSON_DEPTH - 1):
            nested = [nested]
        conv, ms, atts = edited[0]
        edited[0] = (_with(conv, provider_meta={"deep": nested}), ms, atts)
    after = _expected(edited)
    changed_conversations = sum(
        1 for cid, c in after["conversations"].items() if before["conversations"][cid] != c
    )
    changed_messages = sum(
        1
        for cid, ms in after["messages"].items()
        for mid, m in ms.items()
        if before["messages"][cid].get(mid) != m
    )
    n_conversations, n_messages = _distinct(edited)
    counts = repo.save_many(edited)
    assert counts["conversations"] == changed_conversations
    assert counts["skipped_conversations"] == n_conversations - changed_conversations
    assert counts["messages"] == changed_messages
    assert counts["skipped_messages"] == n_messages - changed_messages
    assert _stored(backend, after) == after
