"""The archive bundle format: canonical encoding, strict decoding, and the file layer.

Everything here runs without a database: the format is the contract between export,
import, copy and verify, and between polylogue versions.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylogue.archive.files import (
    iter_lines,
    open_archive_input,
    open_archive_output,
    total_size,
)
from polylogue.archive.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ArchiveFormatError,
    BundleItem,
    Header,
    RunItem,
    decode_line,
    encode_bundle,
    encode_header,
    encode_run,
)
from polylogue.archive.progress import Progress
from polylogue.storage.records import AttachmentRecord, RunRecord
from polylogue.storage.repository import Bundle
from tests.records import attachment, conversation, message
from tests.reliability.test_round_trip_property import batches, ids, metas, texts

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "archive-format.md"

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def _canonical(obj: Any) -> bytes:
    """The brief's definition of the canonical line, independently of format.py."""
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def _decode_all(data: bytes) -> list[Any]:
    items = []
    for line_no, raw in iter_lines(io.BytesIO(data)):
        item = decode_line(raw, line_no)
        if item is not None:
            items.append(item)
    return items


def _error(raw: bytes, line_no: int = 7) -> ArchiveFormatError:
    with pytest.raises(ArchiveFormatError) as caught:
        decode_line(raw, line_no)
    assert caught.value.line == line_no
    assert str(caught.value) == f"line {line_no}: {caught.value.reason}"
    return caught.value


def _bundle_obj(**changes: Any) -> dict[str, Any]:
    conv = conversation("c1").model_dump(mode="json")
    msgs = [message(f"m{i}", "c1").model_dump(mode="json") for i in range(3)]
    obj: dict[str, Any] = {"conversation": conv, "messages": msgs, "attachments": []}
    obj.update(changes)
    return obj


def _raw(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


# --- round trips ---------------------------------------------------------------------


@st.composite
def bundles_with_attachments(draw: st.DrawFn) -> list[Bundle]:
    """The round-trip suite's batches, with attachment references added."""
    out: list[Bundle] = []
    for conv, messages, _ in draw(batches()):
        message_ids = [None, *(m.message_id for m in messages)]
        attachments = [
            AttachmentRecord(
                attachment_id=draw(ids),
                conversation_id=conv.conversation_id,
                message_id=draw(st.sampled_from(message_ids)),
                mime_type=draw(st.none() | texts),
                size_bytes=draw(st.none() | st.integers(0, 2**40)),
                path=draw(st.none() | texts),
                provider_meta=draw(metas),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        out.append((conv, list(messages), attachments))
    return out


runs = st.builds(
    RunRecord,
    run_id=ids,
    timestamp=ids,
    plan_snapshot=metas,
    counts=metas,
    drift=metas,
    indexed=st.none() | st.booleans(),
    duration_ms=st.none() | st.integers(0, 2**63 - 1),
)


@FAST
@given(bundles=bundles_with_attachments())
def test_bundles_round_trip_unchanged_and_in_canonical_bytes(bundles: list[Bundle]) -> None:
    for line_no, (conv, messages, attachments) in enumerate(bundles, 1):
        line = encode_bundle(conv, messages, attachments)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert line == _canonical(
            {
                "conversation": conv.model_dump(mode="json"),
                "messages": [m.model_dump(mode="json") for m in messages],
                "attachments": [a.model_dump(mode="json") for a in attachments],
            }
        )
        item = decode_line(line, line_no)
        assert isinstance(item, BundleItem)
        assert item.line == line_no
        assert item.conversation == conv
        assert item.messages == list(messages)  # order kept, duplicates kept
        assert item.attachments == list(attachments)
        assert encode_bundle(*item.bundle) == line


@FAST
@given(run=runs)
def test_runs_round_trip_unchanged(run: RunRecord) -> None:
    line = encode_run(run)
    assert line == _canonical({"run": run.model_dump(mode="json")})
    item = decode_line(line, 2)
    assert item == RunItem(line=2, run=run)


def test_canonical_bytes_do_not_depend_on_provider_meta_key_order() -> None:
    meta_a = {"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": None}}
    meta_b = {"a": {"x": None, "y": [1, {"p": 3, "q": 2}]}, "b": 1}
    assert list(meta_a) != list(meta_b)
    line_a = encode_bundle(
        conversation("c1", provider_meta=meta_a), [message("m", "c1", provider_meta=meta_a)], []
    )
    line_b = encode_bundle(
        conversation("c1", provider_meta=meta_b), [message("m", "c1", provider_meta=meta_b)], []
    )
    assert line_a == line_b
    assert b'"provider_meta":{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}' in line_a


def test_every_field_is_written_nul_escaped_and_non_bmp_characters_as_themselves() -> None:
    conv = conversation("c1", title="tent\x00 🧳\u2028")
    line = encode_bundle(conv, [message("m0", "c1", text=None)], [])
    assert "tent\\u0000 🧳\u2028".encode() in line
    assert b"\\ud83e" not in line
    assert b'"text":null' in line and b'"timestamp":null' in line
    assert b'"attachments":[]' in line


def test_message_and_attachment_order_is_the_callers() -> None:
    messages = [message("m2", "c1"), message("m1", "c1"), message("m3", "c1")]
    attachments = [attachment("b", "c1"), attachment("a", "c1")]
    item = decode_line(encode_bundle(conversation("c1"), messages, attachments), 1)
    assert isinstance(item, BundleItem)
    assert [m.message_id for m in item.messages] == ["m2", "m1", "m3"]
    assert [a.attachment_id for a in item.attachments] == ["b", "a"]


def test_encoding_refuses_records_of_another_conversation() -> None:
    with pytest.raises(ValueError, match="messages\\[0\\]"):
        encode_bundle(conversation("c1"), [message("m", "c2")], [])


def test_messages_and_attachments_may_be_omitted_on_input() -> None:
    obj = {"conversation": conversation("c1").model_dump(mode="json")}
    item = decode_line(_raw(obj), 3)
    assert isinstance(item, BundleItem)
    assert item.messages == [] and item.attachments == []
    assert item.conversation == conversation("c1")


def test_any_key_order_and_spacing_decodes() -> None:
    obj = _bundle_obj()
    spaced = json.dumps(dict(reversed(obj.items())), indent=None, separators=(" , ", " : "))
    item = decode_line(spaced.encode() + b"\r\n", 1)
    assert isinstance(item, BundleItem)
    assert encode_bundle(*item.bundle) == _canonical(obj)


# --- lines ---------------------------------------------------------------------------


def test_blank_lines_are_skipped_and_crlf_is_tolerated() -> None:
    assert decode_line(b"\n", 1) is None
    assert decode_line(b"  \t \r\n", 4) is None
    assert decode_line(b"", 4) is None
    data = (
        encode_header()
        + b"\n   \n"
        + encode_bundle(conversation("c1"), [], []).replace(b"\n", b"\r\n")
        + b"\r\n"
    )
    items = _decode_all(data)
    assert items[0] == Header(1)
    assert isinstance(items[1], BundleItem) and items[1].line == 4
    assert len(items) == 2


def test_u2028_and_u2029_inside_a_string_are_not_line_breaks() -> None:
    text = "one\u2028two\u2029three\x85four\x0bfive\x1csix"
    data = encode_header() + encode_bundle(conversation("c1"), [message("m", "c1", text=text)], [])
    assert "\u2028".encode() in data  # written as itself, not escaped
    lines = list(iter_lines(io.BytesIO(data)))
    assert [n for n, _ in lines] == [1, 2]
    item = decode_line(lines[1][1], 2)
    assert isinstance(item, BundleItem)
    assert item.messages[0].text == text


# --- errors --------------------------------------------------------------------------


def test_truncated_json_names_the_line() -> None:
    line = encode_bundle(conversation("c1"), [message("m", "c1")], [])
    error = _error(line[:40], 12)
    assert error.reason.startswith("not valid JSON: ")


def test_nan_and_huge_integers_are_refused() -> None:
    assert "NaN" in _error(b'{"run":{"run_id":"r","timestamp":"t","counts":{"a":NaN}}}').reason
    huge = b'{"run":{"run_id":"r","timestamp":"t","duration_ms":' + b"9" * 5000 + b"}}"
    assert "digits" in _error(huge).reason
    assert "nested too deeply" in _error(b"[" * 100_000).reason


def test_invalid_utf8_names_the_byte() -> None:
    raw = b'{"run":{"run_id":"r\xc3(","timestamp":"t"}}'
    error = _error(raw, 5)
    # counted from 1, like the column of a JSON error
    position = raw.index(b"\xc3") + 1
    assert error.reason.startswith(f"not valid UTF-8 at byte {position} of the line")


def test_top_level_must_be_an_object() -> None:
    assert "not an array" in _error(b"[1, 2]").reason
    assert "not a string" in _error(b'"conversation"').reason
    assert "keys found: 'x'" in _error(b'{"x": 1}').reason


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"messages": {}}, "messages must be a JSON array, not an object"),
        ({"attachments": None}, "attachments must be a JSON array, not null"),
        ({"conversation": []}, "conversation must be a JSON object, not an array"),
        ({"comment": "hi", "extra": 1}, "unknown keys 'comment', 'extra' in a bundle line"),
    ],
)
def test_wrong_shapes_name_the_key(changes: dict[str, Any], named: str) -> None:
    assert _error(_raw(_bundle_obj(**changes)), 9).reason == named


def test_record_errors_name_the_record_and_field() -> None:
    obj = _bundle_obj()
    obj["messages"][2]["role"] = 5
    assert str(_error(_raw(obj), 7)) == "line 7: messages[2].role: Input should be a valid string"

    obj = _bundle_obj()
    obj["conversation"]["surprise"] = 1
    assert _error(_raw(obj)).reason == "conversation.surprise: Extra inputs are not permitted"

    obj = _bundle_obj()
    del obj["messages"][1]["content_hash"]
    assert _error(_raw(obj)).reason == "messages[1].content_hash: Field required"

    obj = _bundle_obj(attachments=[{"attachment_id": "a", "conversation_id": "c1"}])
    obj["attachments"][0]["size_bytes"] = 2**41
    assert _error(_raw(obj)).reason.startswith("attachments[0].size_bytes: Input should be")

    obj = _bundle_obj()
    obj["conversation"]["provider_meta"] = {"deep": {"x": -0.0}}
    assert _error(_raw(obj)).reason.startswith("conversation.provider_meta: value['deep']")

    obj = _bundle_obj()
    obj["messages"][0]["text"] = "\ud800"
    assert _error(_raw(obj)).reason.startswith("messages[0].text: holds a lone surrogate")


def test_json_types_are_strict() -> None:
    obj = _bundle_obj()
    obj["conversation"]["version"] = "5"
    assert _error(_raw(obj)).reason.startswith("conversation.version: Input should be")
    run = {"run": {"run_id": "r", "timestamp": "t", "indexed": 1}}
    assert _error(_raw(run)).reason == "run.indexed: Input should be a valid boolean"


def test_several_errors_show_three_and_count_the_rest() -> None:
    obj = _bundle_obj(
        conversation={
            "conversation_id": " ",
            "provider_name": "1x",
            "provider_conversation_id": "",
            "content_hash": "",
            "version": "x",
        }
    )
    reason = _error(_raw(obj)).reason
    assert reason.count("; ") == 2
    assert reason.startswith("conversation.conversation_id: must not be empty")
    assert reason.endswith("(+2 more)")


def test_records_of_another_conversation_are_refused_by_line() -> None:
    obj = _bundle_obj(attachments=[{"attachment_id": "a", "conversation_id": "c2"}])
    error = _error(_raw(obj), 31)
    assert error.reason == (
        "conversation 'c1': attachments[0] ('a') has conversation_id 'c2', not 'c1'"
    )
    obj = _bundle_obj()
    obj["messages"][1]["conversation_id"] = "c9"
    assert "messages[1] ('m1') has conversation_id 'c9'" in _error(_raw(obj)).reason


def test_run_lines_take_only_run() -> None:
    raw = _raw({"run": {"run_id": "r", "timestamp": "t"}, "x": 1})
    assert _error(raw).reason == "unknown key 'x' in a run line"
    assert _error(_raw({"run": [1]})).reason == "run must be a JSON object, not an array"
    assert "run.run_id: Field required" in _error(_raw({"run": {"timestamp": "t"}})).reason


def test_archive_format_error_is_a_value_error() -> None:
    assert issubclass(ArchiveFormatError, ValueError)


# --- header --------------------------------------------------------------------------


def test_header_is_optional_and_read_on_line_1() -> None:
    assert encode_header() == b'{"format":"polylogue-archive","version":1}\n'
    assert decode_line(encode_header(), 1) == Header(FORMAT_VERSION)
    assert decode_line(b'{"version": 1, "format": "polylogue-archive"}', 1) == Header(1)
    without = _decode_all(encode_bundle(conversation("c1"), [], []))
    assert isinstance(without[0], BundleItem)


def test_newer_header_is_refused() -> None:
    raw = _raw({"format": FORMAT_NAME, "version": FORMAT_VERSION + 1})
    assert str(_error(raw, 1)) == (
        "line 1: archive format version 2 is newer than this polylogue reads (1);"
        " upgrade polylogue-storage"
    )


def test_foreign_or_malformed_header_is_refused() -> None:
    assert "'other-tool'" in _error(_raw({"format": "other-tool", "version": 1}), 1).reason
    assert "not true" in _error(_raw({"format": FORMAT_NAME, "version": True}), 1).reason
    assert "not 0" in _error(_raw({"format": FORMAT_NAME, "version": 0}), 1).reason
    extra = {"format": FORMAT_NAME, "version": 1, "by": "x"}
    assert _error(_raw(extra), 1).reason == "unknown key 'by' in the header"


def test_header_on_a_later_line_is_refused() -> None:
    data = encode_header() + encode_bundle(conversation("c1"), [], []) + encode_header()
    with pytest.raises(ArchiveFormatError) as caught:
        _decode_all(data)
    assert caught.value.line == 3
    assert "only be the first line" in caught.value.reason


# --- files ---------------------------------------------------------------------------


def _sample() -> bytes:
    conv, messages, atts = (
        conversation("c1"),
        [message("m1", "c1"), message("m2", "c1")],
        [attachment("a1", "c1", "m1")],
    )
    return (
        encode_header()
        + encode_bundle(conv, messages, atts)
        + encode_bundle(conversation("c2"), [], [])
    )


def _read(path: str) -> tuple[list[Any], int, bool]:
    with open_archive_input(path) as source:
        items = [decode_line(raw, n) for n, raw in iter_lines(source)]
        return items, source.consumed, source.compressed


def test_gzip_is_detected_by_magic_not_by_name(tmp_path: Path) -> None:
    data = _sample()
    disguised = tmp_path / "archive.jsonl"  # gzip inside, plain name
    disguised.write_bytes(gzip.compress(data))
    plain_named_gz = tmp_path / "plain.jsonl.gz"  # plain inside, gzip name
    plain_named_gz.write_bytes(data)

    items, consumed, compressed = _read(str(disguised))
    assert compressed and consumed == disguised.stat().st_size
    assert items == _decode_all(data) and len(items) == 3

    items, consumed, compressed = _read(str(plain_named_gz))
    assert not compressed and consumed == len(data)
    assert items == _decode_all(data)


def test_consumed_counts_compressed_bytes_as_reading_goes(tmp_path: Path) -> None:
    path = tmp_path / "big.gz"
    # incompressible padding in a text field: compressed bytes grow while reading
    rows = [
        encode_bundle(conversation(f"c{i}", title=os.urandom(300).hex()), [], [])
        for i in range(2000)
    ]
    path.write_bytes(gzip.compress(b"".join(rows)))
    seen = []
    with open_archive_input(str(path)) as source:
        for n, _raw_line in iter_lines(source):
            if n % 500 == 0:
                seen.append(source.consumed)
        final = source.consumed
    assert seen == sorted(seen) and seen[0] < final // 2 and seen[-1] <= final
    assert final == path.stat().st_size == total_size(str(path))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with (
        pytest.raises(FileNotFoundError, match=re.escape(str(missing))),
        open_archive_input(str(missing)),
    ):
        pass


def test_truncated_gzip_is_an_os_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(encode_bundle(conversation("c1"), [], []) * 500)[:-30])
    with pytest.raises(OSError, match=re.escape(str(path))):
        _read(str(path))


def test_total_size_is_none_for_stdin_and_pipes(tmp_path: Path) -> None:
    assert total_size("-") is None
    assert total_size(str(tmp_path / "missing")) is None
    read_end, write_end = os.pipe()
    try:
        assert total_size(f"/dev/fd/{read_end}") is None
    finally:
        os.close(read_end)
        os.close(write_end)


def test_dash_reads_stdin_without_closing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _sample()
    fake = io.TextIOWrapper(io.BytesIO(gzip.compress(data)))
    monkeypatch.setattr(sys, "stdin", fake)
    items, _, compressed = _read("-")
    assert compressed and items == _decode_all(data)
    assert not fake.buffer.closed


def test_dash_writes_stdout_flushed_not_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", fake)
    for name in (None, "-"):
        with open_archive_output(name) as out:
            out.write(encode_header())
    assert not fake.buffer.closed
    written = fake.buffer
    assert isinstance(written, io.BytesIO)
    assert written.getvalue() == encode_header() * 2


def test_stdin_and_stdout_through_real_pipes(tmp_path: Path) -> None:
    """A child process copies an archive from stdin to stdout through the file layer."""
    script = (
        "from polylogue.archive.files import open_archive_input, open_archive_output, iter_lines\n"
        "from polylogue.archive.format import decode_line\n"
        "with open_archive_input('-') as src, open_archive_output('-') as out:\n"
        "    for n, raw in iter_lines(src):\n"
        "        decode_line(raw, n)\n"
        "        out.write(raw)\n"
    )
    data = _sample()
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=gzip.compress(data),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == data


def test_output_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    with open_archive_output(str(target)) as out:
        out.write(encode_header())
        assert partial.exists() and not target.exists()
    assert target.read_bytes() == encode_header()
    assert not partial.exists()


def test_an_exception_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl.gz"
    with pytest.raises(RuntimeError), open_archive_output(str(target)) as out:
        out.write(_sample())
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []

    target.write_bytes(b"the previous export")
    with pytest.raises(KeyboardInterrupt), open_archive_output(str(target)) as out:
        out.write(_sample())
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"the previous export"


def test_a_leftover_partial_file_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    partial.write_bytes(b"another export")
    with pytest.raises(FileExistsError, match="remove it"), open_archive_output(str(target)):
        pass
    assert partial.read_bytes() == b"another export" and not target.exists()


def test_new_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        for name in ("plain.jsonl", "packed.jsonl.gz"):
            with open_archive_output(str(tmp_path / name)) as out:
                assert (os.stat(tmp_path / f"{name}.partial").st_mode & 0o777) == 0o600
                out.write(encode_header())
            assert ((tmp_path / name).stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


def test_gz_output_is_compressed_deterministically_and_reads_back(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    for path in (first, second):
        with open_archive_output(str(path)) as out:
            out.write(_sample())
    blob = first.read_bytes()
    assert blob[:2] == b"\x1f\x8b"
    assert blob[3] == 0  # no file name (so no ".partial") in the gzip header
    assert blob[4:8] == b"\0\0\0\0"  # mtime 0
    assert blob == second.read_bytes()
    assert gzip.decompress(blob) == _sample()
    items, _, compressed = _read(str(first))
    assert compressed and items == _decode_all(_sample())


# --- the documented example ----------------------------------------------------------


def _doc_example() -> bytes:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"^```jsonl\n(.*?)^```$", text, flags=re.S | re.M)
    assert len(blocks) == 1
    return str(blocks[0]).encode("utf-8")


def test_the_documented_example_parses_and_is_canonical() -> None:
    data = _doc_example()
    items = _decode_all(data)
    assert items[0] == Header(1)
    assert isinstance(items[1], RunItem)
    bundles = [item for item in items if isinstance(item, BundleItem)]
    assert len(bundles) == 2
    shared = [{a.attachment_id for a in b.attachments} for b in bundles]
    assert shared[0] & shared[1]
    assert any(m.timestamp is None for b in bundles for m in b.messages)
    assert any("\x00" in (m.text or "") for b in bundles for m in b.messages)
    assert any(ord(ch) > 0xFFFF for b in bundles for ch in (b.conversation.title or ""))
    # exactly what export writes for these records, so the example teaches the real form
    again = encode_header() + b"".join(
        encode_run(item.run) if isinstance(item, RunItem) else encode_bundle(*item.bundle)
        for item in items[1:]
        if isinstance(item, RunItem | BundleItem)
    )
    assert again == data
    ids_in_order = [b.conversation.conversation_id for b in bundles]
    assert ids_in_order == sorted(ids_in_order)


# --- progress ------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal_and_clears_its_line() -> None:
    quiet = io.StringIO()
    bar = Progress(1000, "import a.jsonl", enabled=True, stream=quiet)
    bar.update(10**9, 5)
    bar.close()
    assert quiet.getvalue() == ""

    screen = _Terminal()
    Progress(1000, "x", enabled=False, stream=screen).update(10**9, 5)
    assert screen.getvalue() == ""

    bar = Progress(29_000_000, "import a.jsonl", enabled=True, stream=screen)
    text = bar.render(12_300_000, 1234, 4.0)
    assert text.startswith("import a.jsonl   42% 12.3 MB/29.0 MB  3.1 MB/s  ETA 0:05")
    assert text.endswith("1,234 bundles")
    bar.update(100, 1)  # the first update draws at once
    bar.update(200, 2)  # within 0.1 s: not drawn again
    assert screen.getvalue().startswith("\rimport a.jsonl")
    assert screen.getvalue().count("\r") == 1
    bar.close()
    assert screen.getvalue().endswith("\r\x1b[K")
    piped = Progress(None, "import -", enabled=True, stream=screen)
    assert piped.render(5_000_000, 3, 1.0) == "import -  5.0 MB  5.0 MB/s  3 bundles"
