"""``polylogue export``, ``copy`` and ``verify`` on real SQLite, DuckDB and PostgreSQL.

Every test goes through the commands (``CliRunner`` on ``polylogue.cli.main``, or a real
``python -m polylogue`` process) on real databases, and checks what a user gets: the
bytes of the file, the exit status, the ids named, and the databases afterwards.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from polylogue.archive.exporter import iter_bundles
from polylogue.cli import main
from polylogue.errors import OperationalError
from polylogue.storage.backends import create_backend
from polylogue.storage.repository import Bundle, StorageRepository
from tests.records import conversation, message
from tests.reliability._environment import as_other_user, shared_folder

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample-archive.jsonl"
SAMPLE_BYTES = SAMPLE.read_bytes()
BACKENDS = ["sqlite", "duckdb", "postgres"]
MakeUrl = Callable[[str], str]


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def make_url(tmp_path: Path) -> Iterator[MakeUrl]:
    """``make_url(kind)``: a new empty database of that backend, as a URL."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        made = 0

        def make(kind: str) -> str:
            nonlocal made
            made += 1
            if kind == "sqlite":
                return f"sqlite://{tmp_path / f'db{made}.db'}"
            if kind == "duckdb":
                return f"duckdb://{tmp_path / f'db{made}.duckdb'}"
            from tests.support_postgres import fresh_schema, server_url

            schema = stack.enter_context(fresh_schema())
            base = server_url()
            return f"{base}{'&' if '?' in base else '?'}schema={schema}"

        yield make


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def imported(url: str, path: Path = SAMPLE) -> str:
    done = invoke("import", str(path), "--url", url, "--quiet")
    assert done.exit_code == 0, done.output
    return url


def export_bytes(url: str, *extra: str) -> bytes:
    done = invoke("export", "--url", url, "--quiet", *extra)
    assert done.exit_code == 0, done.stderr
    return done.stdout_bytes


def sample_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE_BYTES.splitlines()]


# --- export ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
def test_export_of_the_imported_sample_equals_the_sample_byte_for_byte(
    kind: str, make_url: MakeUrl, tmp_path: Path
) -> None:
    url = imported(make_url(kind))
    out = tmp_path / "out.jsonl"
    done = invoke("export", "--url", url, "-o", str(out))
    assert done.exit_code == 0, done.stderr
    assert out.read_bytes() == SAMPLE_BYTES
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert not Path(f"{out}.partial").exists()
    # the summary goes to stdout when the archive does not
    assert done.stdout == (
        "exported 36 conversations, 167 messages, 24 attachments, 2 runs"
        f" ({len(SAMPLE_BYTES):,} bytes) to {out}\n"
    )
    assert done.stderr == ""


def test_export_to_standard_output_puts_the_summary_on_stderr(make_url: MakeUrl) -> None:
    url = imported(make_url("sqlite"))
    for extra in ([], ["-o", "-"]):
        done = invoke("export", "--url", url, *extra)
        assert done.exit_code == 0, done.stderr
        assert done.stdout_bytes == SAMPLE_BYTES
        assert done.stderr.startswith("exported 36 conversations, 167 messages")
        assert done.stderr.endswith(" to standard output\n")


def test_gz_output_is_compressed_and_deterministic(make_url: MakeUrl, tmp_path: Path) -> None:
    url = imported(make_url("sqlite"))
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    assert invoke("export", "--url", url, "-o", str(first), "--quiet").exit_code == 0
    assert invoke("export", "--url", url, "-o", str(second), "--quiet").exit_code == 0
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(first.read_bytes()) == SAMPLE_BYTES
    assert first.read_bytes() == second.read_bytes()


def test_provider_filter_writes_only_that_provider_and_no_runs(make_url: MakeUrl) -> None:
    url = imported(make_url("sqlite"))
    lines = sample_lines()
    providers = {line["conversation"]["provider_name"] for line in lines if "conversation" in line}
    assert len(providers) > 1
    provider = sorted(providers)[0]
    expected = [SAMPLE_BYTES.splitlines(keepends=True)[0]] + [
        raw
        for raw, line in zip(SAMPLE_BYTES.splitlines(keepends=True), lines, strict=True)
        if "conversation" in line and line["conversation"]["provider_name"] == provider
    ]
    assert len(expected) > 1
    assert export_bytes(url, "--provider", provider) == b"".join(expected)
    assert export_bytes(url, "--provider", "no-such-provider") == expected[0]


def test_since_filter_keeps_conversations_updated_at_or_after(make_url: MakeUrl) -> None:
    url = imported(make_url("sqlite"))
    raws = SAMPLE_BYTES.splitlines(keepends=True)
    lines = sample_lines()
    stamps = sorted(
        str(line["conversation"]["updated_at"])
        for line in lines
        if "conversation" in line and line["conversation"]["updated_at"] is not None
    )
    since = stamps[len(stamps) // 2]
    expected = [raws[0]] + [
        raw
        for raw, line in zip(raws, lines, strict=True)
        if "conversation" in line
        and line["conversation"]["updated_at"] is not None
        and str(line["conversation"]["updated_at"]) >= since
    ]
    assert 1 < len(expected) < len(raws) - 2
    assert export_bytes(url, "--since", since) == b"".join(expected)


def test_since_must_be_an_iso_date(make_url: MakeUrl) -> None:
    url = imported(make_url("sqlite"))
    done = invoke("export", "--url", url, "--since", "last tuesday")
    assert done.exit_code == 2
    assert "not an ISO-8601 date" in done.stderr


def test_export_of_a_missing_database_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    database = folder / "archive.db"
    out = tmp_path / "out" / "x.jsonl"
    for url in (f"sqlite://{database}", f"duckdb://{folder / 'archive.duckdb'}"):
        for extra in (["-o", str(tmp_path / "x.jsonl")], ["-o", str(out)], []):
            done = invoke("export", "--url", url, *extra)
            assert done.exit_code == 1
            assert done.stdout == ""
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "does not exist" in done.stderr
    assert not folder.exists()
    assert not database.exists()
    assert not (tmp_path / "x.jsonl").exists()
    assert not (tmp_path / "x.jsonl.partial").exists()
    assert not out.parent.exists()


def test_export_of_a_read_only_file_in_a_read_only_folder_as_another_user() -> None:
    with shared_folder() as shared:
        folder = shared / "archive"
        folder.mkdir()
        database = folder / "a.db"
        imported(f"sqlite://{database}")
        before = sorted(p.name for p in folder.iterdir())
        os.chmod(database, 0o444)
        os.chmod(folder, 0o555)
        try:

            def work() -> tuple[int, bytes, str]:
                done = CliRunner().invoke(main, ["export", "--url", f"sqlite://{database}"])
                return done.exit_code, done.stdout_bytes, done.stderr

            code, data, stderr = as_other_user(work)
        finally:
            os.chmod(folder, 0o755)
        assert code == 0, stderr
        assert data == SAMPLE_BYTES
        assert sorted(p.name for p in folder.iterdir()) == before


# --- copy and verify across backends ---------------------------------------------------


def test_copy_round_trip_through_every_backend_ends_identical(make_url: MakeUrl) -> None:
    make = make_url
    start = imported(make("sqlite"))
    chain = [start, make("duckdb"), make("postgres"), make("sqlite")]
    for src, dst in itertools.pairwise(chain):
        done = invoke("copy", src, dst)
        assert done.exit_code == 0, done.stderr
        assert done.stdout.startswith(
            "copied 36 conversations and 2 runs: inserted 36 conversations, 167 messages,"
            " 24 attachments; skipped 0 conversations"
        )
        assert done.stdout.endswith("verified: the copy is identical to the source\n")
        assert export_bytes(dst) == SAMPLE_BYTES
    done = invoke("verify", chain[0], chain[-1])
    assert done.exit_code == 0, done.output
    assert done.stdout.endswith("identical\n")
    assert "conversations     36   36" in done.stdout
    # copying again changes nothing and says so
    again = invoke("copy", chain[0], chain[1])
    assert again.exit_code == 0, again.stderr
    assert "inserted 0 conversations, 0 messages, 0 attachments;" in again.stdout
    assert "skipped 36 conversations, 167 messages, 24 attachments" in again.stdout


def test_copying_again_after_a_trip_through_postgres_skips_everything(
    make_url: MakeUrl,
) -> None:
    start = imported(make_url("sqlite"))
    chain = [start, make_url("postgres"), make_url("sqlite")]
    for src, dst in itertools.pairwise(chain):
        assert invoke("copy", src, dst, "--quiet").exit_code == 0
    again = invoke("copy", chain[0], chain[-1])
    assert again.exit_code == 0, again.stderr
    assert "inserted 0 conversations, 0 messages, 0 attachments;" in again.stdout


@pytest.mark.parametrize("kind", BACKENDS)
def test_export_import_export_is_identical_on_each_backend(
    kind: str, make_url: MakeUrl, tmp_path: Path
) -> None:
    first = imported(make_url(kind))
    exported = tmp_path / "first.jsonl.gz"
    assert invoke("export", "--url", first, "-o", str(exported), "--quiet").exit_code == 0
    second = imported(make_url(kind), exported)
    assert export_bytes(second) == export_bytes(first) == SAMPLE_BYTES


def test_copy_refuses_the_same_database(tmp_path: Path) -> None:
    url = imported(f"sqlite://{tmp_path / 'a.db'}")
    for dst in (url, f"duckdb://{tmp_path / 'a.db'}", f"sqlite://{tmp_path / '.' / 'a.db'}"):
        done = invoke("copy", url, dst)
        assert done.exit_code == 1
        assert "same database" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_copy_from_a_missing_database_creates_neither(tmp_path: Path) -> None:
    done = invoke("copy", f"sqlite://{tmp_path / 'missing.db'}", f"sqlite://{tmp_path / 'b.db'}")
    assert done.exit_code == 1
    assert "does not exist" in done.stderr
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgres"])
def test_verify_names_changed_missing_and_extra_conversations(kind: str, make_url: MakeUrl) -> None:
    source = imported(make_url("sqlite"))
    target = make_url(kind)
    assert invoke("copy", source, target, "--quiet").exit_code == 0
    with create_backend(url=source, migrate=False, read_only=True) as backend:
        ids = [c.conversation_id for c, _m, _a in iter_bundles(backend)]
        changed_id, missing_id = ids[3], ids[7]
        changed_messages = backend.get_messages(changed_id)
    extra = conversation("zz-extra-conversation")
    with create_backend(url=target) as backend:
        first = changed_messages[0]
        backend.save_messages([first.model_copy(update={"text": f"{first.text} (edited)"})])
        assert backend.delete_conversation(missing_id)
        StorageRepository(backend).save_conversation(
            conversation=extra, messages=[message("zz-extra-m1", extra.conversation_id)]
        )
    done = invoke("verify", source, target)
    assert done.exit_code == 1
    out = done.stdout
    assert "different:" in out and "identical" not in out
    assert f"1 conversation only on A: {missing_id}" in out
    assert "1 conversation only on B: zz-extra-conversation" in out
    assert f"1 conversation with other content: {changed_id}" in out
    assert "conversations: 36 on A, 36 on B" not in out  # equal counts are not differences

    report = json.loads(invoke("verify", source, target, "--json").stdout)
    assert report["identical"] is False
    assert report["only_a"] == {"count": 1, "first": [missing_id]}
    assert report["only_b"] == {"count": 1, "first": ["zz-extra-conversation"]}
    assert report["different"] == {"count": 1, "first": [changed_id]}
    assert report["digest"]["a"] != report["digest"]["b"]

    # copying the source again repairs the edit and the deletion, but copy never deletes,
    # so the extra conversation is still reported and copy exits 1 naming it
    again = invoke("copy", source, target, "--quiet")
    assert again.exit_code == 1
    assert "only on B: zz-extra-conversation" in again.stderr
    assert "other content" not in again.stderr and "only on A" not in again.stderr


def test_verify_show_limits_the_ids_listed(tmp_path: Path) -> None:
    empty = f"sqlite://{tmp_path / 'empty.db'}"
    assert invoke("migrate", "--url", empty).exit_code == 0
    full = imported(f"sqlite://{tmp_path / 'full.db'}")
    done = invoke("verify", full, empty, "--show", "2")
    assert done.exit_code == 1
    assert "36 conversations only on A: " in done.stdout
    assert ", and 34 more" in done.stdout
    assert "conversations: 36 on A, 0 on B" in done.stdout
    assert "the runs differ" in done.stdout


def test_verify_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    full = imported(f"sqlite://{tmp_path / 'full.db'}")
    done = invoke("verify", full, f"sqlite://{tmp_path / 'nope.db'}")
    assert done.exit_code == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "does not exist" in done.stderr
    assert not (tmp_path / "nope.db").exists()


# --- real processes: an interrupted copy, memory ----------------------------------------

BIG_CONVERSATIONS = 10_000
BIG_MESSAGES = 20


def big_bundles() -> Iterator[Bundle]:
    text = "x" * 200
    for i in range(BIG_CONVERSATIONS):
        cid = f"big{i:06d}"
        yield (
            conversation(cid, updated_at=f"2024-01-{1 + i % 28:02d}"),
            [message(f"{cid}-m{j}", cid, text=text) for j in range(BIG_MESSAGES)],
            [],
        )


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite archive of 10,000 conversations and 200,000 messages (about 60 MB)."""
    url = f"sqlite://{tmp_path_factory.mktemp('big') / 'big.db'}"
    with create_backend(url=url) as backend:
        StorageRepository(backend).save_many(big_bundles())
    return url


def cli_process(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "polylogue", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_killed_copy_finishes_when_run_again(big_source: str, tmp_path: Path) -> None:
    target = f"sqlite://{tmp_path / 'copy.db'}"
    started = time.monotonic()
    process = cli_process("copy", big_source, target, "--batch-size", "200", "--no-verify")
    # kill it once some batches are committed, well before the end
    while time.monotonic() - started < 30 and process.poll() is None:
        time.sleep(0.1)
        if time.monotonic() - started > 0.5 and (tmp_path / "copy.db").exists():
            try:
                with create_backend(url=target, migrate=False, read_only=True) as peek:
                    if peek.count_rows()["conversations"] > 0:
                        break
            except OperationalError:
                continue  # the file exists, its schema is not committed yet
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the copy ended before it was killed"
    with create_backend(url=target, migrate=False, read_only=True) as peek:
        copied = peek.count_rows()["conversations"]
    assert 0 < copied < BIG_CONVERSATIONS

    rerun = cli_process("copy", big_source, target, "--batch-size", "200")
    stdout, stderr = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert f"inserted {BIG_CONVERSATIONS - copied:,} conversations" in text
    assert f"skipped {copied:,} conversations" in text
    assert text.endswith("verified: the copy is identical to the source\n")
    with (
        create_backend(url=big_source, migrate=False, read_only=True) as a,
        create_backend(url=target, migrate=False, read_only=True) as b,
    ):
        assert a.count_rows() == b.count_rows()
        assert b.count_rows()["messages"] == BIG_CONVERSATIONS * BIG_MESSAGES
    assert invoke("verify", big_source, target).exit_code == 0


PEAK_PROBE = """
import runpy, sys
sys.argv = ["polylogue", *sys.argv[1:]]
try:
    runpy.run_module("polylogue", run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("peak " + peak.split()[1] + "\\n")
"""


def test_a_large_export_runs_in_bounded_memory(big_source: str, tmp_path: Path) -> None:
    out = tmp_path / "big.jsonl"
    # VmHWM is this process's own peak: ru_maxrss would also count the pages of the
    # test process it was forked from (tens of MB once the big archive was made)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, "export", "--url", big_source, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    summary, peak = done.stdout, done.stderr.splitlines()[-1]
    assert summary.startswith(f"exported {BIG_CONVERSATIONS:,} conversations, 200,000 messages")
    assert out.stat().st_size > 50_000_000
    with out.open("rb") as lines:
        assert sum(1 for _ in lines) == 1 + BIG_CONVERSATIONS
    peak_mb = int(peak.removeprefix("peak ")) / 1024
    # about 40 MB measured; holding the archive's records would take several hundred
    assert peak_mb < 100, f"peak RSS {peak_mb:.0f} MB"
