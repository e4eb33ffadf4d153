"""The committed sample archive: reproducible, valid, as rich as promised, importable.

``examples/sample-archive.jsonl`` is what new users import first and the one file that
holds every hard case of the format at once. These tests keep it honest: the generator
still produces it byte for byte, every line decodes, it still holds the edge cases it
exists for, and SQLite gives it back unchanged (an export of the imported sample is the
file itself).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from polylogue.archive.format import (
    BundleItem,
    Header,
    RunItem,
    decode_line,
    encode_bundle,
    encode_run,
)
from polylogue.storage.backends import create_backend
from polylogue.storage.repository import StorageRepository

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "make_sample_archive.py"
SAMPLE = ROOT / "examples" / "sample-archive.jsonl"
REGENERATE = f"regenerate it with `python {SCRIPT.relative_to(ROOT)}` and commit both files"


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return SAMPLE.read_bytes().splitlines(keepends=True)


@pytest.fixture(scope="module")
def items(lines: list[bytes]) -> list[Header | RunItem | BundleItem]:
    decoded = []
    for number, raw in enumerate(lines, start=1):
        item = decode_line(raw, number)
        assert item is not None, f"{SAMPLE}:{number}: blank line ({REGENERATE})"
        decoded.append(item)
    return decoded


@pytest.fixture(scope="module")
def bundles(items: list[Header | RunItem | BundleItem]) -> list[BundleItem]:
    return [item for item in items if isinstance(item, BundleItem)]


@pytest.fixture(scope="module")
def runs(items: list[Header | RunItem | BundleItem]) -> list[RunItem]:
    return [item for item in items if isinstance(item, RunItem)]


def test_the_generator_reproduces_the_committed_file(tmp_path: Path) -> None:
    out = tmp_path / "sample.jsonl"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == SAMPLE.read_bytes(), f"{SAMPLE} is stale: {REGENERATE}"


def test_the_generator_names_an_unwritable_path(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "sample.jsonl"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert str(out) in done.stderr and "-o" in done.stderr


def test_every_line_is_canonical_and_in_export_order(
    lines: list[bytes], items: list[Header | RunItem | BundleItem]
) -> None:
    assert isinstance(items[0], Header)
    assert [type(item) for item in items[1:3]] == [RunItem, RunItem]
    assert all(isinstance(item, BundleItem) for item in items[3:])
    for number, (raw, item) in enumerate(zip(lines, items, strict=True), start=1):
        if isinstance(item, BundleItem):
            assert encode_bundle(*item.bundle) == raw, f"{SAMPLE}:{number} is not canonical"
            messages = [
                (m.timestamp is not None, m.timestamp or "", m.message_id) for m in item.messages
            ]
            assert messages == sorted(messages), f"{SAMPLE}:{number}: messages out of order"
            refs = [
                (a.attachment_id, a.message_id is not None, a.message_id or "")
                for a in item.attachments
            ]
            assert refs == sorted(refs), f"{SAMPLE}:{number}: attachments out of order"
        elif isinstance(item, RunItem):
            assert encode_run(item.run) == raw, f"{SAMPLE}:{number} is not canonical"
    run_keys = [(r.run.timestamp, r.run.run_id) for r in items[1:3] if isinstance(r, RunItem)]
    assert run_keys == sorted(run_keys, reverse=True), "runs must be newest first"
    ids = [b.conversation.conversation_id for b in items if isinstance(b, BundleItem)]
    # Python orders strings by code point, the order export promises.
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_the_sample_holds_what_it_promises(bundles: list[BundleItem]) -> None:
    conversations = [b.conversation for b in bundles]
    messages = [m for b in bundles for m in b.messages]
    refs = [a for b in bundles for a in b.attachments]
    texts = [m.text or "" for m in messages] + [c.title or "" for c in conversations]
    everything = "\n".join(texts)

    assert len(conversations) >= 30
    assert {c.provider_name for c in conversations} >= {"chatgpt", "claude", "gemini", "codex"}
    assert {m.role for m in messages} >= {"user", "assistant", "system", "tool"}
    assert any(c.title is None for c in conversations)
    assert any(c.provider_meta is None for c in conversations)
    assert any(m.timestamp is None for m in messages)
    assert any("\x00" in m.text for m in messages if m.text)
    assert any(ord(ch) > 0xFFFF for ch in everything), "no character beyond U+FFFF"
    assert "\u200d" in everything, "no ZWJ emoji sequence"
    assert "```python" in everything and "```sql" in everything
    for script, pattern in {
        "accented Latin": r"[éèàñü]",
        "CJK": r"[\u4e00-\u9fff]",
        "kana": r"[\u3040-\u30ff]",
        "Cyrillic": r"[\u0400-\u04ff]",
        "Arabic": r"[\u0600-\u06ff]",
    }.items():
        assert re.search(pattern, everything), f"no {script} text"

    # A message id belongs to exactly one conversation, and ids look as documented.
    message_ids = [m.message_id for m in messages]
    assert len(set(message_ids)) == len(message_ids)
    for b in bundles:
        assert re.fullmatch(r"[a-z]+:conv-\d{4}", b.conversation.conversation_id)
        for m in b.messages:
            assert m.message_id.startswith(f"{b.conversation.conversation_id}:m")
        assert re.fullmatch(r"[0-9a-f]{64}", b.conversation.content_hash)

    # Shared attachments: some id used by 2 and some by 3+ conversations, each reference
    # repeating the same attachment fields (else import -> export would not round-trip).
    users: dict[str, set[str]] = defaultdict(set)
    fields: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    for a in refs:
        users[a.attachment_id].add(a.conversation_id)
        fields[a.attachment_id].add((a.mime_type, a.size_bytes, a.path, repr(a.provider_meta)))
    assert max(len(c) for c in users.values()) >= 3
    assert any(len(c) == 2 for c in users.values())
    assert all(len(f) == 1 for f in fields.values()), "a shared attachment's fields differ"
    assert any(a.message_id is None for a in refs) and any(a.message_id for a in refs)
    assert {a.mime_type for a in refs} >= {"image/png", "image/jpeg", "application/pdf"}
    assert all(a.size_bytes and a.path for a in refs)


def test_the_sample_imports_into_sqlite_and_exports_back(
    tmp_path: Path, lines: list[bytes], bundles: list[BundleItem], runs: list[RunItem]
) -> None:
    backend = create_backend(url=f"sqlite://{tmp_path / 'a.db'}")
    try:
        repository = StorageRepository(backend)
        counts = repository.save_many(b.bundle for b in bundles)
        assert counts == {
            "conversations": len(bundles),
            "messages": sum(len(b.messages) for b in bundles),
            "attachments": sum(len(b.attachments) for b in bundles),
            "skipped_conversations": 0,
            "skipped_messages": 0,
            "skipped_attachments": 0,
        }
        for r in runs:
            repository.record_run(r.run)

        per_provider: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for b in bundles:
            row = per_provider[b.conversation.provider_name]
            row[0] += 1
            row[1] += len(b.messages)
            row[2] += len(b.attachments)
        stored = {
            p["provider_name"]: [p["conversations"], p["messages"], p["attachments"]]
            for p in backend.stats()["providers"]
        }
        assert stored == dict(per_provider)

        # What export writes, from what the database gives back: the file's own lines.
        exported = [encode_run(run) for run in backend.get_runs()]
        for cid in sorted(c.conversation_id for c in backend.list_conversations()):
            conversation = backend.get_conversation(cid)
            assert conversation is not None
            exported.append(
                encode_bundle(conversation, backend.get_messages(cid), backend.get_attachments(cid))
            )
        assert exported == lines[1:]
    finally:
        backend.close()
