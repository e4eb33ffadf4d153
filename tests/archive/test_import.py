"""``polylogue import``: bundle files into real SQLite, DuckDB and PostgreSQL databases.

Every test goes through the command (``CliRunner`` on ``polylogue.cli.main``, or a real
``python -m polylogue`` process) and then reads the database back, so what is checked is
what a user gets: the counts, the data itself, which lines were refused with which line
number, and which batches were committed when the import stopped.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from polylogue.archive.format import encode_bundle, encode_header, encode_run
from polylogue.archive.importer import import_archives
from polylogue.cli import main
from polylogue.storage.backends import create_backend
from polylogue.storage.records import RunRecord
from polylogue.storage.repository import Bundle, StorageRepository
from tests.records import bundle, conversation, message

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-archive.jsonl"


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "duckdb", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, as the URL the command takes."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'a.db'}"
    elif request.param == "duckdb":
        yield f"duckdb://{tmp_path / 'a.duckdb'}"
    else:
        from tests.support_postgres import fresh_schema, server_url

        with fresh_schema() as schema:
            base = server_url()
            yield f"{base}{'&' if '?' in base else '?'}schema={schema}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'a.db'}"


def bundles(count: int, prefix: str = "c") -> list[Bundle]:
    """``count`` bundles of 3 messages, each with a shared and an own attachment."""
    return [bundle(f"{prefix}{i}", 3, ("shared", f"own-{prefix}{i}")) for i in range(count)]


def run_record(run_id: str = "run-1") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        timestamp="2024-05-02T09:30:00Z",
        counts={"conversations": 5},
        indexed=True,
        duration_ms=1840,
    )


def bundle_lines(items: Iterable[Bundle]) -> list[bytes]:
    return [encode_bundle(*item) for item in items]


def write(path: Path, lines: Sequence[bytes], *, gz: bool = False) -> str:
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def invoke(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["import", *args], input=stdin)


def stored_ids(url: str) -> set[str]:
    with create_backend(url=url) as backend:
        return {c.conversation_id for c in backend.list_conversations()}


def assert_stored(url: str, expected: Iterable[Bundle]) -> None:
    """The database holds exactly these bundles' records, field for field."""
    with create_backend(url=url) as backend:
        for conv, messages, attachments in expected:
            cid = conv.conversation_id
            assert backend.get_conversation(cid) == conv
            got = sorted(backend.get_messages(cid), key=lambda m: m.message_id)
            assert got == sorted(messages, key=lambda m: m.message_id)
            refs = sorted(backend.get_attachments(cid), key=lambda a: a.ref_id)
            assert refs == sorted(attachments, key=lambda a: a.ref_id)


def summary_json(result: Result) -> dict[str, Any]:
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


# --- importing good files ----------------------------------------------------------------


def test_import_stores_the_file_and_reimport_skips_everything(url: str, tmp_path: Path) -> None:
    items = bundles(5)
    path = write(
        tmp_path / "a.jsonl", [encode_header(), encode_run(run_record()), *bundle_lines(items)]
    )
    first = invoke(path, "--url", url)
    assert first.exit_code == 0, first.output
    assert first.stdout == (
        "imported 1 file: inserted 5 conversations, 15 messages, 10 attachments;"
        " skipped 0 conversations, 0 messages, 0 attachments; 1 run; 0 lines rejected\n"
    )
    assert first.stderr == ""
    assert_stored(url, items)
    with create_backend(url=url) as backend:
        assert backend.get_runs() == [run_record()]

    again = invoke(path, "--url", url, "--json")
    assert again.exit_code == 0, again.output
    assert summary_json(again) == {
        "inserted": {"conversations": 0, "messages": 0, "attachments": 0},
        "skipped": {"conversations": 5, "messages": 15, "attachments": 10},
        "runs": 1,
        "rejected": [],
        "stopped_at": None,
    }
    assert_stored(url, items)
    with create_backend(url=url) as backend:
        assert len(backend.get_runs()) == 1  # recording a run again changes nothing


def test_the_sample_archive_imports_in_small_batches(sqlite_url: str) -> None:
    result = invoke(str(SAMPLE), "--url", sqlite_url, "--batch-size", "7", "--json")
    assert result.exit_code == 0, result.output
    summary = summary_json(result)
    lines = [json.loads(raw) for raw in SAMPLE.read_bytes().splitlines()]
    sample = [line for line in lines if "conversation" in line]
    assert summary["inserted"] == {
        "conversations": len(sample),
        "messages": sum(len(line["messages"]) for line in sample),
        "attachments": sum(len(line["attachments"]) for line in sample),
    }
    assert summary["runs"] == sum(1 for line in lines if "run" in line)
    assert stored_ids(sqlite_url) == {line["conversation"]["conversation_id"] for line in sample}


def test_json_output_has_exactly_the_documented_keys(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", [encode_header(), b"{oops\n", *bundle_lines(bundles(1))])
    result = invoke(path, "--url", sqlite_url, "--json", "--on-error", "skip")
    assert result.exit_code == 1
    summary = summary_json(result)  # stdout is the JSON object and nothing else
    assert list(summary) == ["inserted", "skipped", "runs", "rejected", "stopped_at"]
    assert list(summary["inserted"]) == ["conversations", "messages", "attachments"]
    assert list(summary["skipped"]) == ["conversations", "messages", "attachments"]
    assert summary["rejected"] == [
        {"file": path, "line": 2, "error": summary["rejected"][0]["error"]}
    ]
    assert set(summary["rejected"][0]) == {"file", "line", "error"}
    assert "not valid JSON" in summary["rejected"][0]["error"]


def test_gzip_file_and_several_files(url: str, tmp_path: Path) -> None:
    first, second = bundles(3, "a"), bundles(2, "b")
    packed = write(tmp_path / "a.bin", [encode_header(), *bundle_lines(first)], gz=True)
    plain = write(tmp_path / "b.jsonl", bundle_lines(second))  # no header: version 1
    result = invoke(packed, plain, "--url", url, "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported 2 files: inserted 5 conversations, 15 messages,")
    assert_stored(url, first + second)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_standard_input(sqlite_url: str, gz: bool) -> None:
    items = bundles(4)
    data = b"".join([encode_header(), *bundle_lines(items)])
    result = invoke("-", "--url", sqlite_url, "--json", stdin=gzip.compress(data) if gz else data)
    assert result.exit_code == 0, result.output
    assert summary_json(result)["inserted"]["conversations"] == 4
    assert_stored(sqlite_url, items)


def test_blank_lines_are_skipped(sqlite_url: str, tmp_path: Path) -> None:
    a, b = bundles(2)
    path = write(tmp_path / "a.jsonl", [b"\n", encode_bundle(*a), b"  \r\n", encode_bundle(*b)])
    result = invoke(path, "--url", sqlite_url, "--json")
    assert result.exit_code == 0, result.output
    assert summary_json(result)["rejected"] == []
    assert_stored(sqlite_url, [a, b])


# --- bad lines --------------------------------------------------------------------------

good = encode_bundle(*bundle("bad", 2))
BAD_LINES = {
    "truncated JSON": (good[: len(good) // 2] + b"\n", "not valid JSON"),
    "wrong type": (
        good.replace(b'"version":1', b'"version":"1"', 1),
        "conversation.version: Input should be a valid integer",
    ),
    "invalid record": (
        good.replace(b'"message_id":"bad-m1"', b'"message_id":"   "'),
        "messages[1].message_id",
    ),
    "foreign message": (
        good.replace(
            b'"conversation_id":"bad","message_id":"bad-m1"',
            b'"conversation_id":"x","message_id":"bad-m1"',
        ),
        "has conversation_id 'x', not 'bad'",
    ),
    "not an object": (b"[1, 2]\n", "expected a JSON object"),
}


def test_the_bad_lines_really_are_bad() -> None:
    for raw, _reason in BAD_LINES.values():
        assert raw != good


def seven_bundles_and_a_bad_line(tmp_path: Path, bad: bytes) -> tuple[str, list[Bundle]]:
    """Line 1 header, lines 2-6 bundles c0..c4, line 7 ``bad``, lines 8-9 c5, c6.

    With ``--batch-size 2``: c0,c1 and c2,c3 are full batches; c4 is collected when the
    bad line comes.
    """
    items = bundles(7)
    lines = [encode_header(), *bundle_lines(items[:5]), bad, *bundle_lines(items[5:])]
    return write(tmp_path / "bad.jsonl", lines), items


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_stop_keeps_earlier_batches_and_drops_the_batch_with_the_bad_line(
    url: str, tmp_path: Path, case: str
) -> None:
    bad, reason = BAD_LINES[case]
    path, items = seven_bundles_and_a_bad_line(tmp_path, bad)
    result = invoke(path, "--url", url, "--batch-size", "2", "--json")
    assert result.exit_code == 1
    summary = summary_json(result)
    assert summary["stopped_at"] == {"file": path, "line": 7}
    [rejected] = summary["rejected"]
    assert rejected["line"] == 7 and rejected["file"] == path
    assert reason in rejected["error"]
    assert summary["inserted"]["conversations"] == 4
    assert f"{path}:7: " in result.stderr
    assert f"lines from {path}:6 on were not imported" in result.stderr
    assert "run the import again" in result.stderr
    assert stored_ids(url) == {"c0", "c1", "c2", "c3"}
    assert_stored(url, items[:4])

    # After the fix, the same import again: the earlier batches are reported as skipped.
    write(Path(path), [encode_header(), *bundle_lines(items)])
    fixed = invoke(path, "--url", url, "--batch-size", "2", "--json")
    assert fixed.exit_code == 0, fixed.output
    again = summary_json(fixed)
    assert again["inserted"]["conversations"] == 3
    assert again["skipped"]["conversations"] == 4
    assert_stored(url, items)


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_skip_stores_every_good_bundle(sqlite_url: str, tmp_path: Path, case: str) -> None:
    bad, reason = BAD_LINES[case]
    path, items = seven_bundles_and_a_bad_line(tmp_path, bad)
    result = invoke(path, "--url", sqlite_url, "--batch-size", "2", "--on-error", "skip")
    assert result.exit_code == 1
    assert result.stdout.startswith("imported 1 file: inserted 7 conversations, 21 messages,")
    assert result.stdout.endswith("; 1 line rejected\n")
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}:7: ") and reason in line
    assert stored_ids(sqlite_url) == {f"c{i}" for i in range(7)}
    assert_stored(sqlite_url, items)


def test_skip_under_duckdb_and_postgres(url: str, tmp_path: Path) -> None:
    path, items = seven_bundles_and_a_bad_line(tmp_path, BAD_LINES["wrong type"][0])
    result = invoke(path, "--url", url, "--batch-size", "2", "--on-error", "skip", "--json")
    assert result.exit_code == 1
    summary = summary_json(result)
    assert summary["stopped_at"] is None
    assert [(r["file"], r["line"]) for r in summary["rejected"]] == [(path, 7)]
    assert_stored(url, items)


NEWER = b'{"format":"polylogue-archive","version":2}\n'


def test_a_newer_format_version_is_refused_whole(sqlite_url: str, tmp_path: Path) -> None:
    newer = write(tmp_path / "newer.jsonl", [NEWER, *bundle_lines(bundles(2, "n"))])
    fine = write(tmp_path / "fine.jsonl", bundle_lines(bundles(2, "f")))

    stop = invoke(newer, fine, "--url", sqlite_url, "--json")
    assert stop.exit_code == 1
    summary = summary_json(stop)
    assert summary["stopped_at"] == {"file": newer, "line": 1}
    assert "version 2 is newer than this polylogue reads" in summary["rejected"][0]["error"]
    assert stored_ids(sqlite_url) == set()

    skip = invoke(newer, fine, "--url", sqlite_url, "--json", "--on-error", "skip")
    assert skip.exit_code == 1
    summary = summary_json(skip)
    assert summary["stopped_at"] is None
    [rejected] = summary["rejected"]
    assert (rejected["file"], rejected["line"]) == (newer, 1)
    assert "the rest of this file was not read" in rejected["error"]
    # nothing of the newer file is read as version 1; the next file is imported
    assert stored_ids(sqlite_url) == {"f0", "f1"}


def test_a_header_after_line_one_is_one_bad_line(sqlite_url: str, tmp_path: Path) -> None:
    a, b = bundles(2)
    path = write(tmp_path / "cat.jsonl", [encode_bundle(*a), encode_header(), encode_bundle(*b)])
    result = invoke(path, "--url", sqlite_url, "--on-error", "skip", "--json")
    assert result.exit_code == 1
    [rejected] = summary_json(result)["rejected"]
    assert rejected["line"] == 2 and "only be the first line" in rejected["error"]
    assert stored_ids(sqlite_url) == {"c0", "c1"}


def test_at_most_twenty_rejections_are_listed_on_stderr(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "junk.jsonl", [b"{\n"] * 25 + bundle_lines(bundles(1)))
    result = invoke(path, "--url", sqlite_url, "--on-error", "skip", "--quiet")
    assert result.exit_code == 1
    assert result.stdout == ""  # --quiet: no summary
    lines = result.stderr.splitlines()
    assert lines[:20] == [f"{path}:{n}: {lines[n - 1].split(': ', 1)[1]}" for n in range(1, 21)]
    assert lines[20:] == ["... and 5 more"]
    assert stored_ids(sqlite_url) == {"c0"}


# --- message ownership -----------------------------------------------------------------


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_bundle_claiming_another_conversations_message(
    url: str, tmp_path: Path, on_error: str
) -> None:
    owner: Bundle = (conversation("owner"), [message("owner-m0", "owner", text="mine")], [])
    with create_backend(url=url, migrate=True) as backend:
        StorageRepository(backend).save_many([owner])
    thief: Bundle = (
        conversation("thief"),
        [message("thief-m0", "thief"), message("owner-m0", "thief")],
        [],
    )
    items = bundles(5)
    # line 1 header; 2-3 c0,c1; 4 thief; 5-7 c2,c3,c4 (batches: 2-3, 4-5, 6-7)
    lines = [encode_header(), *bundle_lines(items[:2]), encode_bundle(*thief)]
    path = write(tmp_path / "o.jsonl", lines + bundle_lines(items[2:]))
    result = invoke(path, "--url", url, "--batch-size", "2", "--on-error", on_error, "--json")
    assert result.exit_code == 1
    summary = summary_json(result)
    [rejected] = summary["rejected"]
    assert (rejected["file"], rejected["line"]) == (path, 4)
    assert "'owner-m0'" in rejected["error"] and "'owner'" in rejected["error"]
    assert f"{path}:4: " in result.stderr
    with create_backend(url=url) as backend:
        assert [m.text for m in backend.get_messages("owner")] == ["mine"]
        assert backend.get_conversation("thief") is None
    if on_error == "stop":
        assert summary["stopped_at"] == {"file": path, "line": 4}
        # the rest of the thief's batch (c2) is committed; nothing after it is read
        assert stored_ids(url) == {"owner", "c0", "c1", "c2"}
        assert summary["inserted"]["conversations"] == 3
        assert "lines after" in result.stderr and f"{path}:5" in result.stderr
    else:
        assert summary["stopped_at"] is None
        assert stored_ids(url) == {"owner", "c0", "c1", "c2", "c3", "c4"}
        assert summary["inserted"]["conversations"] == 5
        assert_stored(url, items)


# --- failures ---------------------------------------------------------------------------


def test_a_missing_file_is_one_line_and_creates_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = invoke(str(missing), "--url", f"sqlite://{tmp_path / 'a.db'}")
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot read {missing}: No such file or directory\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "a.db").exists()


def test_a_truncated_gzip_file_is_one_line(sqlite_url: str, tmp_path: Path) -> None:
    data = gzip.compress(b"".join(bundle_lines(bundles(50))))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    result = invoke(str(path), "--url", sqlite_url)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert str(path) in line and "is the file complete?" in line
    assert "Traceback" not in result.output


def test_batch_size_must_be_positive(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", bundle_lines(bundles(1)))
    result = invoke(path, "--url", sqlite_url, "--batch-size", "0")
    assert result.exit_code == 2 and "--batch-size" in result.stderr


def test_the_engine_with_progress_off_a_terminal(tmp_path: Path) -> None:
    items = bundles(3)
    path = write(tmp_path / "a.jsonl", bundle_lines(items))
    with create_backend(url=f"sqlite://{tmp_path / 'a.db'}") as backend:
        summary = import_archives(StorageRepository(backend), [path], progress=True)
    assert summary.files == 1 and summary.bundles_read == 3
    assert summary.inserted == {"conversations": 3, "messages": 9, "attachments": 6}
    with pytest.raises(ValueError, match="batch_size"):
        import_archives(StorageRepository(backend), [path], batch_size=0)


# --- real processes ---------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "polylogue", "import", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
        env=env,
    )


def test_a_real_process_prints_the_summary_and_the_rejections(tmp_path: Path) -> None:
    path, _items = seven_bundles_and_a_bad_line(tmp_path, b"[1]\n")
    done = run_cli(path, "--url", f"sqlite://{tmp_path / 'a.db'}", "--on-error", "skip")
    assert done.returncode == 1
    assert done.stdout == (
        "imported 1 file: inserted 7 conversations, 21 messages, 14 attachments;"
        " skipped 0 conversations, 0 messages, 0 attachments; 0 runs; 1 line rejected\n"
    )
    assert done.stderr == (
        f"{path}:7: expected a JSON object (a header, a bundle or a run), not an array\n"
    )


def big_archive(path: Path, conversations: int, messages_each: int) -> None:
    """Written one bundle at a time, so the test itself stays small too."""
    text = "x" * 200
    with open(path, "wb") as out:
        out.write(encode_header())
        for i in range(conversations):
            cid = f"big{i:06d}"
            out.write(
                encode_bundle(
                    conversation(cid),
                    [message(f"{cid}-m{j}", cid, text=text) for j in range(messages_each)],
                    [],
                )
            )


def test_a_large_file_is_imported_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    big_archive(path, 10_000, 20)  # 200,000 messages, about 80 MB
    assert path.stat().st_size > 60_000_000
    # A parent process of its own, so that its RUSAGE_CHILDREN peak is the import's alone
    # (not some other test's child). The whole file in memory would take about 430 MB.
    measure = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([done.returncode, done.stdout, done.stderr, peak]))\n"
    )
    command = [sys.executable, "-m", "polylogue", "import", str(path), "--json"]
    command += ["--url", f"sqlite://{tmp_path / 'a.db'}"]
    done = subprocess.run(
        [sys.executable, "-c", measure, *command],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    returncode, stdout, stderr, peak_kib = json.loads(done.stdout)
    assert returncode == 0, stderr
    assert json.loads(stdout)["inserted"] == {
        "conversations": 10_000,
        "messages": 200_000,
        "attachments": 0,
    }
    assert peak_kib < 250 * 1024, f"peak RSS {peak_kib / 1024:.0f} MB"
