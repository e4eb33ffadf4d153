"""Hostile records: stored verbatim on every backend, or refused before anything is written.

SQL metacharacters and injection strings, U+0000, Unicode normalisation variants, lone
surrogates, values at and beyond every numeric and index limit, deep and self-referencing
``provider_meta``, JSON numbers at the edges of floats and integers, records of another
conversation in a bundle, a 50 MB text and a 100,000-message conversation (issue 8,
defect 9 and the hostile-input suite). A refusal is a ``ValidationError``, an
``IntegrityError`` or a ``BundleError`` naming the field, and the database is unchanged
after it: the refused values are passed to the backend as mappings, which it validates
before it writes.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from polylogue.storage.backends import SQLBackend
from polylogue.storage.records import (
    MAX_ATTACHMENT_SIZE,
    MAX_DURATION_MS,
    MAX_JSON_DEPTH,
    MAX_JSON_INT_DIGITS,
    MAX_KEY_BYTES,
    MAX_VERSION,
    MIN_VERSION,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.repository import BundleError, StorageRepository
from tests.conftest import BACKEND_FACTORIES, raw_scalar
from tests.records import attachment, conversation, message

INJECTIONS = [
    "'; DROP TABLE messages; --",
    '"; DROP TABLE conversations; --',
    "Robert'); DROP TABLE attachments;--",
    "' OR '1'='1",
    "1; DELETE FROM messages WHERE 1=1",
    "x' UNION SELECT * FROM runs --",
    "\\",
    "\\'",
    "\\\\0",
    "\\0",
    "%s",
    "%(message_id)s",
    "%%",
    "100%",
    ":name",
    ":message_id",
    "?",
    "$1",
    "$$ LANGUAGE sql $$",
    "{}",
    "{0}",
    "/* comment */",
    "-- comment",
    "NULL",
    "\u2400",
    "\u2400\\0 looks escaped",
    "\x00",
    "a\x00b\x00",
    "\\\x00\\",
    "\x1b[31mred\x1b[0m",
    "\u202eevil",
    "\ufeffbom",
    "tab\tnew\nline\rreturn",
    " ",
    "",
]

NORMALISATION_VARIANTS = [
    "caf\u00e9",  # NFC
    "cafe\u0301",  # NFD
    "\u00c5",  # A with ring (NFC)
    "\u212b",  # ANGSTROM SIGN (its NFC is U+00C5)
    "A\u030a",  # NFD
    "\ud55c",  # Hangul syllable (NFC)
    "\u1112\u1161\u11ab",  # the same in jamo (NFD)
]

TABLES = ("conversations", "messages", "attachments", "attachment_refs", "runs")


def snapshot(backend: SQLBackend) -> dict[str, Any]:
    """What a refused write must leave unchanged: every table's rows, as records."""
    counts = {t: int(raw_scalar(backend, f"SELECT count(*) FROM {t}")) for t in TABLES}
    conversations = backend.list_conversations()
    return {
        "counts": counts,
        "conversations": conversations,
        "messages": {
            c.conversation_id: backend.get_messages(c.conversation_id) for c in conversations
        },
        "attachments": {
            c.conversation_id: backend.get_attachments(c.conversation_id) for c in conversations
        },
        "runs": backend.get_runs(),
    }


def _seeded(backend: SQLBackend) -> dict[str, Any]:
    StorageRepository(backend).save_conversation(
        conversation=conversation("seed", provider_meta={"source": "s"}),
        messages=[message("seed-m", "seed")],
        attachments=[attachment("seed-a", "seed", "seed-m")],
    )
    backend.record_run(RunRecord(run_id="seed-run", timestamp="t0"))
    return snapshot(backend)


def _id(value: str) -> str:
    return value if value.strip() else f"blank[{value!r}]"


def test_injection_strings_and_nul_are_stored_verbatim(backend: SQLBackend) -> None:
    repo = StorageRepository(backend)
    bundles = []
    for n, hostile in enumerate(INJECTIONS):
        cid = _id(hostile) if n % 2 else f"c{n}:{hostile}"
        meta = {hostile: hostile, "nested": [hostile, {hostile: [hostile]}], "n": n}
        conv = conversation(
            cid,
            provider_conversation_id=_id(hostile),
            title=hostile,
            created_at=hostile,
            updated_at=hostile,
            provider_meta={**meta, "source": hostile.replace("\x00", "")},
        )
        msg = message(
            _id(hostile) if n % 2 else f"m{n}:{hostile}",
            cid,
            provider_message_id=hostile,
            role=hostile,
            text=hostile,
            timestamp=hostile,
            content_hash=_id(hostile),
            provider_meta=meta,
        )
        att = attachment(
            _id(hostile) if n % 2 else f"a{n}:{hostile}",
            cid,
            msg.message_id,
            mime_type=hostile,
            path=hostile,
            provider_meta=meta,
        )
        bundles.append((conv, [msg], [att]))
    counts = repo.save_many(bundles)
    assert (counts["conversations"], counts["messages"], counts["attachments"]) == (
        len(INJECTIONS),
        len(INJECTIONS),
        len(INJECTIONS),
    )
    for conv, msgs, atts in bundles:
        assert backend.get_conversation(conv.conversation_id) == conv
        assert backend.get_messages(conv.conversation_id) == msgs
        assert backend.get_attachments(conv.conversation_id) == atts
    # every table is still there and holds exactly what was saved
    assert snapshot(backend)["counts"] == {
        "conversations": len(INJECTIONS),
        "messages": len(INJECTIONS),
        "attachments": len(INJECTIONS),
        "attachment_refs": len(INJECTIONS),
        "runs": 0,
    }
    sources = {c.provider_meta["source"] for c, _m, _a in bundles if c.provider_meta}
    for source in sources:
        found = backend.list_conversations(source=source)
        assert {c.conversation_id for c in found} == {
            c.conversation_id for c, _m, _a in bundles if c.provider_meta["source"] == source
        }
    again = repo.save_many(bundles)
    assert (again["conversations"], again["messages"], again["attachments"]) == (0, 0, 0)
    backend.record_run(RunRecord(run_id=INJECTIONS[0], timestamp=INJECTIONS[2], counts=meta))
    assert backend.get_runs()[0] == RunRecord(
        run_id=INJECTIONS[0], timestamp=INJECTIONS[2], counts=meta
    )


def test_normalisation_variants_stay_distinct_and_verbatim(backend: SQLBackend) -> None:
    assert len({unicodedata.normalize("NFC", v) for v in NORMALISATION_VARIANTS}) < len(
        NORMALISATION_VARIANTS
    )
    repo = StorageRepository(backend)
    meta = {variant: variant for variant in NORMALISATION_VARIANTS}
    assert len(meta) == len(NORMALISATION_VARIANTS)
    for variant in NORMALISATION_VARIANTS:
        repo.save_conversation(
            conversation=conversation(variant, title=variant, provider_meta=meta),
            messages=[message(variant, variant, text=variant, provider_meta=meta)],
            attachments=[attachment(variant, variant, variant, path=variant)],
        )
    listed = backend.list_conversations()
    assert sorted(c.conversation_id for c in listed) == sorted(NORMALISATION_VARIANTS)
    for variant in NORMALISATION_VARIANTS:
        got = backend.get_conversation(variant)
        assert got is not None and got.title == variant and got.provider_meta == meta
        # Stored with sorted keys (jsonb orders them its own way), so that equal dicts are
        # equal texts and a record read back and saved again counts as unchanged.
        assert list(got.provider_meta) == sorted(meta) or backend.dialect == "postgresql"
        (msg,) = backend.get_messages(variant)
        assert (msg.message_id, msg.text) == (variant, variant)
        (att,) = backend.get_attachments(variant)
        assert (att.attachment_id, att.path) == (variant, variant)


def _refused(
    backend: SQLBackend, before: dict[str, Any], field: str, write: Callable[[], object]
) -> None:
    """``write`` raises a ValidationError naming ``field`` and changes nothing."""
    with pytest.raises(ValidationError) as caught:
        write()
    assert field in {str(e["loc"][0]) for e in caught.value.errors()}, caught.value
    assert snapshot(backend) == before


def _conversation(**fields: Any) -> dict[str, Any]:
    return conversation("bad").model_dump() | fields


def _message(**fields: Any) -> dict[str, Any]:
    return message("bad-m", "seed").model_dump() | fields


def _attachment(**fields: Any) -> dict[str, Any]:
    return attachment("bad-a", "seed", "seed-m").model_dump() | fields


def _run(**fields: Any) -> dict[str, Any]:
    return RunRecord(run_id="bad-run", timestamp="t").model_dump() | fields


def test_lone_surrogates_are_refused_naming_the_field(backend: SQLBackend) -> None:
    before = _seeded(backend)
    lone = "half \ud800 of a pair"
    cases: list[tuple[str, Callable[[], object]]] = [
        ("conversation_id", lambda: backend.save_conversation(_conversation(conversation_id=lone))),
        ("title", lambda: backend.save_conversation(_conversation(title=lone))),
        ("text", lambda: backend.save_messages([message("ok", "seed"), _message(text=lone)])),
        ("role", lambda: backend.save_messages([_message(role=lone)])),
        ("provider_meta", lambda: backend.save_messages([_message(provider_meta={lone: 1})])),
        ("provider_meta", lambda: backend.save_messages([_message(provider_meta={"k": [lone]})])),
        ("path", lambda: backend.save_attachments([_attachment(path=lone)])),
        ("run_id", lambda: backend.record_run(_run(run_id=lone))),
    ]
    for field, write in cases:
        _refused(backend, before, field, write)


def test_numbers_at_the_limits_are_stored_and_beyond_them_refused(backend: SQLBackend) -> None:
    before = _seeded(backend)
    for n, version in enumerate((MIN_VERSION, MAX_VERSION)):
        conv = conversation(f"v{n}", version=version)
        msg = message(f"v{n}-m", f"v{n}", version=version)
        StorageRepository(backend).save_conversation(conversation=conv, messages=[msg])
        assert backend.get_conversation(conv.conversation_id) == conv
        assert backend.get_messages(conv.conversation_id) == [msg]
    for size in (0, MAX_ATTACHMENT_SIZE):
        att = attachment(f"size-{size}", "v0", size_bytes=size)
        backend.save_attachments([att])
        assert att in backend.get_attachments("v0")
    for duration in (0, MAX_DURATION_MS):
        run = RunRecord(run_id=f"d{duration}", timestamp=f"t{duration}", duration_ms=duration)
        backend.record_run(run)
        assert run in backend.get_runs()
    before = snapshot(backend)
    for field, write in [
        ("version", lambda: backend.save_conversation(_conversation(version=MAX_VERSION + 1))),
        ("version", lambda: backend.save_conversation(_conversation(version=MIN_VERSION - 1))),
        ("version", lambda: backend.save_messages([_message(version=MAX_VERSION + 1)])),
        ("version", lambda: backend.save_messages([_message(version=2**63)])),
        ("size_bytes", lambda: backend.save_attachments([_attachment(size_bytes=-1)])),
        (
            "size_bytes",
            lambda: backend.save_attachments([_attachment(size_bytes=MAX_ATTACHMENT_SIZE + 1)]),
        ),
        ("duration_ms", lambda: backend.record_run(_run(duration_ms=-1))),
        ("duration_ms", lambda: backend.record_run(_run(duration_ms=MAX_DURATION_MS + 1))),
    ]:
        _refused(backend, before, field, write)


STORED_NUMBERS: list[float | int] = [
    0.0,
    1.0,
    0.1,
    1 / 3,
    1e-7,
    -1e-300,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    1e16,
    1e22,
    1e23,
    -1e23,
    1e308,
    1.7976931348623157e308,  # the largest float
    float(2**63),
    2**53 + 1,
    -(2**63) - 1,
    2**63,
    2**64,
    10**30,
    10**MAX_JSON_INT_DIGITS - 1,
    -(10**MAX_JSON_INT_DIGITS) + 1,
]


def _same_json(a: Any, b: Any) -> bool:
    """Equal with the same types and float signs (``0.0 == -0.0`` and ``1 == 1.0`` in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


def test_json_numbers_at_the_edges_come_back_exactly(backend: SQLBackend) -> None:
    _seeded(backend)
    meta = {"numbers": STORED_NUMBERS, "nested": {"n": [{"x": v} for v in STORED_NUMBERS]}}
    conv = conversation("numbers", provider_meta=meta)
    msg = message("numbers-m", "numbers", provider_meta=meta)
    StorageRepository(backend).save_conversation(conversation=conv, messages=[msg])
    got_conv = backend.get_conversation("numbers")
    assert got_conv is not None and _same_json(got_conv.provider_meta, meta)
    assert _same_json(backend.get_messages("numbers")[0].provider_meta, meta)
    before = snapshot(backend)
    for bad in (-0.0, [1, {"deep": -0.0}], math.nan, math.inf, -math.inf, 10**MAX_JSON_INT_DIGITS):
        _refused(
            backend,
            before,
            "provider_meta",
            lambda bad=bad: backend.save_messages([_message(provider_meta={"v": bad})]),
        )
        _refused(
            backend,
            before,
            "provider_meta",
            lambda bad=bad: backend.save_conversation(_conversation(provider_meta={"v": bad})),
        )


def _nested(depth: int, as_list: bool = False) -> dict[str, Any]:
    """A ``provider_meta`` value ``depth`` levels deep (the dict itself is level 1)."""
    inner: Any = "bottom"
    for _ in range(depth - 1):
        inner = [inner] if as_list else {"k": inner}
    return {"k": inner}


def test_deep_and_self_referencing_provider_meta(backend: SQLBackend) -> None:
    _seeded(backend)
    deepest = _nested(MAX_JSON_DEPTH)
    deepest_list = _nested(MAX_JSON_DEPTH, as_list=True)
    conv = conversation("deep", provider_meta={**deepest, "source": "deep"})
    msg = message("deep-m", "deep", provider_meta=deepest_list)
    att = attachment("deep-a", "deep", "deep-m", provider_meta=deepest)
    StorageRepository(backend).save_conversation(
        conversation=conv, messages=[msg], attachments=[att]
    )
    run = RunRecord(run_id="deep-run", timestamp="t", plan_snapshot=deepest_list)
    backend.record_run(run)
    assert backend.get_conversation("deep") == conv
    assert backend.get_messages("deep") == [msg]
    assert backend.get_attachments("deep") == [att]
    assert run in backend.get_runs()
    assert [c.conversation_id for c in backend.list_conversations(source="deep")] == ["deep"]
    before = snapshot(backend)
    looped: dict[str, Any] = {"a": 1}
    looped["self"] = looped
    looped_list: list[Any] = []
    looped_list.append({"again": looped_list})
    for bad in (
        _nested(MAX_JSON_DEPTH + 1),
        _nested(MAX_JSON_DEPTH + 1, as_list=True),
        _nested(5000),
        looped,
        {"list": looped_list},
    ):
        _refused(
            backend,
            before,
            "provider_meta",
            lambda bad=bad: backend.save_conversation(_conversation(provider_meta=bad)),
        )
        _refused(
            backend,
            before,
            "provider_meta",
            lambda bad=bad: backend.save_messages([_message(provider_meta=bad)]),
        )
        _refused(
            backend,
            before,
            "plan_snapshot",
            lambda bad=bad: backend.record_run(_run(plan_snapshot=bad)),
        )


def _key(size: int, salt: str) -> str:
    """``size`` bytes of UTF-8 that PostgreSQL's U+0000 escaping makes as long as it can:
    U+0000 (stored as two bytes), backslashes (doubled), a 4-byte emoji; unique by salt."""
    head = f"{salt}\x00\\😀"
    return (
        head
        + "\x00\\" * ((size - len(head.encode())) // 2)
        + "x" * ((size - len(head.encode())) % 2)
    )


def test_indexed_texts_at_the_byte_limit_are_stored_and_beyond_it_refused(
    backend: SQLBackend,
) -> None:
    _seeded(backend)
    key = _key(MAX_KEY_BYTES, "c")
    assert len(key.encode()) == MAX_KEY_BYTES
    source = "\u2400" + "\\" * (MAX_KEY_BYTES - 3)  # escaped on PostgreSQL, doubled
    conv = conversation(
        key,
        provider_name="p" * MAX_KEY_BYTES,
        provider_conversation_id=_key(MAX_KEY_BYTES, "p"),
        updated_at=_key(MAX_KEY_BYTES, "u"),
        provider_meta={"source": source},
    )
    msg = message(_key(MAX_KEY_BYTES, "m"), key)
    att = attachment(_key(MAX_KEY_BYTES, "a"), key, msg.message_id)
    StorageRepository(backend).save_conversation(
        conversation=conv, messages=[msg], attachments=[att]
    )
    run = RunRecord(run_id=_key(MAX_KEY_BYTES, "r"), timestamp=_key(MAX_KEY_BYTES, "t"))
    backend.record_run(run)
    assert backend.get_conversation(key) == conv
    assert backend.get_messages(key) == [msg]
    assert backend.get_attachments(key) == [att]
    assert run in backend.get_runs()
    assert backend.list_conversations(source=source) == [conv]
    assert backend.list_conversations(provider=conv.provider_name) == [conv]
    before = snapshot(backend)
    over = _key(MAX_KEY_BYTES + 1, "o")
    for field, write in [
        ("conversation_id", lambda: backend.save_conversation(_conversation(conversation_id=over))),
        (
            "provider_conversation_id",
            lambda: backend.save_conversation(_conversation(provider_conversation_id=over)),
        ),
        (
            "provider_name",
            lambda: backend.save_conversation(
                _conversation(provider_name="p" * (MAX_KEY_BYTES + 1))
            ),
        ),
        ("updated_at", lambda: backend.save_conversation(_conversation(updated_at=over))),
        (
            "provider_meta",
            lambda: backend.save_conversation(
                _conversation(provider_meta={"source": source + "x"})
            ),
        ),
        ("message_id", lambda: backend.save_messages([_message(message_id=over)])),
        ("conversation_id", lambda: backend.save_messages([_message(conversation_id=over)])),
        ("attachment_id", lambda: backend.save_attachments([_attachment(attachment_id=over)])),
        ("message_id", lambda: backend.save_attachments([_attachment(message_id=over)])),
        ("run_id", lambda: backend.record_run(_run(run_id=over))),
        ("timestamp", lambda: backend.record_run(_run(timestamp=over))),
    ]:
        _refused(backend, before, field, write)


def test_records_of_another_conversation_are_refused_before_writing(backend: SQLBackend) -> None:
    before = _seeded(backend)
    repo = StorageRepository(backend)
    conv = conversation("own")
    for messages, attachments, named in (
        ([message("own-m", "own"), message("x-m", "seed")], [], "messages[1] ('x-m')"),
        ([], [attachment("x-a", "seed")], "attachments[0] ('x-a')"),
    ):
        with pytest.raises(BundleError) as caught:
            repo.save_conversation(conversation=conv, messages=messages, attachments=attachments)
        assert named in str(caught.value) and "'seed'" in str(caught.value)
        assert snapshot(backend) == before
        bundles = [
            (conversation("fine"), [message("fine-m", "fine")], []),
            (conv, messages, attachments),
        ]
        with pytest.raises(BundleError, match="bundle 1"):
            repo.save_many(bundles)
        assert snapshot(backend) == before


FIFTY_MB = 50 * 1024 * 1024
HUNDRED_THOUSAND = 100_000
LARGE_VALUE_MEMORY = "1GB"
"""DuckDB's memory_limit that holds a 50 MB text (its default does not, see below)."""

SIZE_BACKENDS = [name for name in ("sqlite-file", "postgres") if name in BACKEND_FACTORIES]
"""Where the 50 MB text goes: SQLite on a file, PostgreSQL (through its U+0000 escaping);
DuckDB has a test of its own. Memory SQLite adds nothing at this size."""


@pytest.fixture(params=SIZE_BACKENDS)
def roomy_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLBackend]:
    with BACKEND_FACTORIES[request.param](tmp_path) as made:
        yield made


def _fifty_mb_text() -> str:
    # U+0000 at both ends makes PostgreSQL escape the whole text (its slow path)
    text = "\x00" + ("0123456789abcdef\\" * (FIFTY_MB // 17 + 1))[: FIFTY_MB - 2] + "\x00"
    assert len(text.encode()) == FIFTY_MB
    return text


def test_a_50_mb_text_round_trips(roomy_backend: SQLBackend) -> None:
    backend, text = roomy_backend, _fifty_mb_text()
    repo = StorageRepository(backend)
    conv, messages = conversation("big"), [message("big-m", "big", text=text)]
    assert repo.save_conversation(conversation=conv, messages=messages)["messages"] == 1
    (got,) = backend.get_messages("big")
    assert got.text == text
    again = repo.save_conversation(conversation=conv, messages=messages)
    assert (again["messages"], again["skipped_messages"]) == (0, 1)


def test_duckdb_short_of_memory_for_a_50_mb_text_says_so_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """With its default memory_limit DuckDB may not hold a 50 MB value: then the write fails
    whole with an error naming memory_limit, and a larger one stores it."""
    pytest.importorskip("duckdb")
    from polylogue.errors import OperationalError
    from polylogue.storage.backends.duckdb.backend import DEFAULT_MEMORY_LIMIT, DuckDBBackend

    text = _fifty_mb_text()
    path = tmp_path / "archive.duckdb"
    with DuckDBBackend(path) as backend:
        assert backend.memory_limit == DEFAULT_MEMORY_LIMIT
        before = _seeded(backend)
        try:
            backend.save_messages([message("big-m", "seed", text=text)])
        except OperationalError as exc:
            assert "memory_limit" in str(exc) and text[:20] not in str(exc)
            assert snapshot(backend) == before
        else:
            assert backend.get_messages("seed")[-1].text == text
    with DuckDBBackend(path, memory_limit=LARGE_VALUE_MEMORY) as backend:
        backend.save_messages([message("big-m", "seed", text=text)])
        assert {m.message_id: m.text for m in backend.get_messages("seed")}["big-m"] == text


def test_a_100000_message_conversation_round_trips(tmp_path: Path) -> None:
    """On SQLite, the default archive (the other backends' large-batch paths have tests of
    their own at a few thousand rows; this is about size, and costs seconds per backend)."""
    messages = [
        MessageRecord(
            message_id=f"huge-{i:06d}",
            conversation_id="huge",
            role="user",
            text=f"message {i}",
            timestamp=f"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
            content_hash=f"h{i}",
        )
        for i in range(HUNDRED_THOUSAND)
    ]
    with BACKEND_FACTORIES["sqlite-file"](tmp_path) as backend:
        repo = StorageRepository(backend)
        counts = repo.save_conversation(conversation=conversation("huge"), messages=messages)
        assert (counts["messages"], counts["skipped_messages"]) == (HUNDRED_THOUSAND, 0)
        got = backend.get_messages("huge")
        assert {m.message_id: m for m in got} == {m.message_id: m for m in messages}
        again = repo.save_conversation(conversation=conversation("huge"), messages=messages)
        assert (again["messages"], again["skipped_messages"]) == (0, HUNDRED_THOUSAND)
