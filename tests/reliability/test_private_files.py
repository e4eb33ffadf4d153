"""Everything the kit creates is its owner's alone, whatever the umask.

Files 0600, folders 0700: SQLite's database, ``-wal`` and ``-shm``; DuckDB's database,
its ``.wal`` (message text in clear) through checkpoints that delete and recreate it,
and its spill folder; the new parent folders of either. Checked under the usual umask
and under ``umask 000``, where anything created with the driver's own modes would be
readable (and writable) by everyone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from polylogue.storage.backends import SQLBackend, SQLiteBackend
from polylogue.storage.private_files import FILE_MODE, FOLDER_MODE
from polylogue.storage.repository import StorageRepository
from tests.records import bundle

duckdb = pytest.importorskip("duckdb", reason="the duckdb extra is not installed")
from polylogue.storage.backends.duckdb.backend import DuckDBBackend  # noqa: E402

SPILLING_QUERY = (
    "SELECT count(*) FROM (SELECT md5(range::VARCHAR) AS h FROM range(2000000) ORDER BY h)"
)
"""Sorts more than a 64MB memory limit holds: DuckDB spills to its temporary folder."""


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def save(backend: SQLBackend, cid: str) -> None:
    conv, messages, attachments = bundle(cid, 3, ("a",))
    StorageRepository(backend).save_conversation(
        conversation=conv, messages=messages, attachments=attachments
    )


def everything_under(folder: Path) -> dict[Path, int]:
    return {path: mode(path) for path in folder.rglob("*")}


def test_sqlite_files_and_new_folders(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "new" / "deeper" / "archive.db"
    with SQLiteBackend(path) as backend:
        save(backend, "c1")
        side = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in side)
        assert {p: mode(p) for p in [path, *side]} == dict.fromkeys([path, *side], FILE_MODE)
    assert mode(tmp_path / "new") == FOLDER_MODE and mode(path.parent) == FOLDER_MODE


def test_duckdb_files_wal_through_checkpoints_and_spill_folder(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "new" / "deeper" / "archive.duckdb"
    wal = path.with_name(path.name + ".wal")
    with DuckDBBackend(path, memory_limit="64MB") as backend:
        assert mode(tmp_path / "new") == FOLDER_MODE and mode(path.parent) == FOLDER_MODE
        assert mode(path) == FILE_MODE
        for round_ in range(3):
            # A write recreates the .wal that the checkpoint before it deleted.
            save(backend, f"c{round_}")
            assert wal.exists() and mode(wal) == FILE_MODE, oct(mode(wal))
            with backend._reading("test") as conn:
                conn.execute("FORCE CHECKPOINT")
            assert not wal.exists() or mode(wal) == FILE_MODE
        save(backend, "after")
        os.chmod(wal, 0o644)  # as an older version may have left it
        save(backend, "again")
        assert mode(wal) == FILE_MODE
        with backend._reading("test") as conn:
            spill = Path(conn.execute("SELECT current_setting('temp_directory')").fetchone()[0])
            assert conn.execute(SPILLING_QUERY).fetchone() == (2000000,)
        assert spill.parent == path.parent and spill.name.startswith(f"{path.name}.tmp-")
        assert mode(spill) == FOLDER_MODE and any(spill.iterdir())  # it did spill, in there
        assert not path.with_name(path.name + ".tmp").exists()
        for side, side_mode in everything_under(path.parent).items():
            if side.parent == path.parent:  # what others could reach
                assert side_mode in (FILE_MODE, FOLDER_MODE), (side, oct(side_mode))
    assert not spill.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_duckdb_in_memory_spills_to_a_private_folder(
    tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with DuckDBBackend(":memory:", memory_limit="64MB") as backend:
        save(backend, "c1")
        with backend._reading("test") as conn:
            spill = Path(conn.execute("SELECT current_setting('temp_directory')").fetchone()[0])
            assert conn.execute(SPILLING_QUERY).fetchone() == (2000000,)
        assert mode(spill) == FOLDER_MODE and any(spill.iterdir())
    assert not spill.exists()
    assert list(tmp_path.iterdir()) == []  # no ./.tmp


def test_duckdb_spill_folders_of_killed_processes_are_removed(tmp_path: Path) -> None:
    """A process killed with the file open leaves its spill folder; the next writer that
    holds the file removes it (nobody else can be using it then)."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "archive.duckdb"
    script = (
        "import os, signal, sys\n"
        "from polylogue.storage.backends.duckdb.backend import DuckDBBackend\n"
        "DuckDBBackend(sys.argv[1])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )

    def spill_folders() -> list[Path]:
        return [p for p in tmp_path.iterdir() if p.name.startswith(f"{path.name}.tmp-")]

    left: list[Path] = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
        assert done.returncode == -signal.SIGKILL
        assert len(spill_folders()) == 1  # the killed one's own; its predecessor's is gone
        left += spill_folders()
    assert left[0] != left[1]
    with DuckDBBackend(path) as backend:
        with backend._reading("test") as conn:
            mine = Path(conn.execute("SELECT current_setting('temp_directory')").fetchone()[0])
        assert spill_folders() == [mine]
    assert spill_folders() == []
