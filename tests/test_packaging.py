"""The built wheel carries the SQL and works from outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from polylogue.storage.migration_scripts import discover

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_migrates_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = dist.glob("polylogue_storage-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in (
        "polylogue/py.typed",
        "polylogue/sql/sqlite/messages.sql",
        "polylogue/sql/sqlite/.sqlfluff",
        "polylogue/migrations/sqlite/0001_initial.sql",
        "polylogue/migrations/sqlite/0004_conversation_source_name.sql",
    ):
        assert required in names, required

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    database = outside / "archive.db"
    result = subprocess.run(
        [str(env_dir / "bin" / "polylogue"), "migrate", "--url", f"sqlite://{database}"],
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"now at schema version {discover('sqlite')[-1].version}" in result.stdout
    where = subprocess.run(
        [
            str(python),
            "-c",
            "from polylogue.storage.sqlfiles import resource_dir;"
            " print(resource_dir('sql', 'sqlite'))",
        ],
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where
