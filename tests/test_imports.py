"""Import-time behaviour: every module imports on its own, and the leaf core stays a leaf.

Also what existing callers write first: ``from polylogue.protocols import StorageBackend``
and matching the validation messages they have always matched.

Each check runs in a fresh interpreter (a subprocess), because an import cycle or an eager
import only shows in the order a fresh process meets the modules, never in a test process
that has already imported the package. A broken ``migrations/sqlite`` is tested on a
temporary copy of the package put first on ``PYTHONPATH``: discovery looks for the
folder next to the package it was imported from (:func:`polylogue.storage.sqlfiles.resource_dir`).
"""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

import polylogue
from polylogue.storage.sqlfiles import resource_dir
from tests import support_postgres
from tests.records import conversation

MODULES = sorted(
    {"polylogue"}
    | {
        info.name
        for info in pkgutil.walk_packages(polylogue.__path__, "polylogue.")
        # Importing __main__ runs the command line.
        if info.name != "polylogue.__main__"
    }
)
LEAF_MODULES = [
    "polylogue",
    "polylogue.errors",
    "polylogue.types",
    "polylogue.protocols",
    "polylogue.storage",
    "polylogue.storage.records",
]
"""The records, ids, errors and protocol: what a caller needs to hand records around."""

MACHINERY = [
    "aiosql",
    "sqlite3",
    "_sqlite3",
    "psycopg",
    "duckdb",
    "polylogue.storage.backends",
    "polylogue.storage.migrate",
    "polylogue.storage.sqlfiles",
]
"""Drivers, the query loader and the modules that read SQL files."""


def run_python(code: str, *, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYLOGUE_")}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        # ``-c`` puts the working directory first on sys.path: run the copy from its root.
        cwd=path,
    )


def run_cli(argv: list[str], *, path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m polylogue ARGV`` on the package under ``path``."""
    return run_python(f"import sys; sys.argv[1:] = {argv!r}; import polylogue.__main__", path=path)


def test_the_module_list_is_the_package() -> None:
    assert {"polylogue.protocols", "polylogue.storage.db", "polylogue.cli"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    result = run_python(f"import {module}")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", LEAF_MODULES)
def test_leaf_modules_load_no_storage_machinery(module: str) -> None:
    result = run_python(
        f"import sys, {module}\nprint(' '.join(m for m in {MACHINERY!r} if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_storage_names_still_resolve_lazily() -> None:
    result = run_python(
        "import polylogue.storage as s\n"
        "assert 'StorageRepository' in dir(s) and set(s.__all__) <= set(dir(s))\n"
        "from polylogue.storage import StorageRepository, create_backend, store_records\n"
        "from polylogue.storage.repository import StorageRepository as R\n"
        "assert StorageRepository is R\n"
        "import polylogue.storage.records\n"
        "assert s.db.open_connection and s.repository.StorageRepository is R\n"
        "from polylogue.protocols import StorageBackend\n"
        "assert StorageBackend.__module__ == 'polylogue.protocols'\n"
        "try:\n"
        "    s.no_such_name\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "no_such_name" in result.stdout


def test_validation_keeps_the_messages_existing_callers_match() -> None:
    with pytest.raises(ValidationError, match="Must start with a letter"):
        conversation("c", provider_name="9lives")


def test_schema_version_is_read_on_first_use_not_at_import() -> None:
    result = run_python(
        "import sys, polylogue.storage.db as db\n"
        "assert 'SCHEMA_VERSION' not in vars(db)\n"
        "assert 'SCHEMA_VERSION' in dir(db)\n"
        "from polylogue.storage.db import SCHEMA_VERSION\n"
        "from polylogue.storage.migration_scripts import discover\n"
        "assert type(SCHEMA_VERSION) is int\n"
        "assert SCHEMA_VERSION == discover('sqlite')[-1].version\n"
    )
    assert result.returncode == 0, result.stderr


def _gap(folder: Path) -> str:
    # Drop the script in the middle: the history jumps over its version.
    scripts = sorted(folder.glob("*.sql"))
    victim = scripts[len(scripts) // 2]
    victim.unlink()
    return scripts[len(scripts) // 2 + 1].name


def _duplicate(folder: Path) -> str:
    first = sorted(folder.glob("*.sql"))[0]
    copy = folder / f"{first.name[:4]}_also_this_version.sql"
    shutil.copyfile(first, copy)
    return copy.name


def _misnamed(folder: Path) -> str:
    (folder / "5_Misnamed.sql").write_text("SELECT 1;\n")
    return "5_Misnamed.sql"


BREAKAGES: dict[str, Callable[[Path], str]] = {
    "gap": _gap,
    "duplicate": _duplicate,
    "misnamed": _misnamed,
}


@pytest.fixture(params=sorted(BREAKAGES))
def broken_copy(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the package whose SQLite migrations are broken, and the file to blame."""
    root = tmp_path / "site"
    package = Path(polylogue.__file__).parent
    shutil.copytree(package, root / "polylogue", ignore=shutil.ignore_patterns("__pycache__"))
    for kind in ("sql", "migrations"):
        for dialect in ("sqlite", "postgresql", "duckdb"):
            source = resource_dir(kind, dialect)
            shutil.copytree(source, root / kind / dialect)
    blamed = BREAKAGES[request.param](root / "migrations" / "sqlite")
    return root, blamed


def test_broken_sqlite_migrations_break_no_import(broken_copy: tuple[Path, str]) -> None:
    root, _ = broken_copy
    result = run_python(
        "import polylogue.storage, polylogue.storage.db, polylogue.storage.store, polylogue.cli\n"
        "from polylogue.storage import StorageRepository, create_backend\n"
        "print(polylogue.storage.__file__)",
        path=root,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(root))


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["status", "--help"]])
def test_broken_sqlite_migrations_leave_help_and_version(
    broken_copy: tuple[Path, str], argv: list[str]
) -> None:
    root, _ = broken_copy
    result = run_cli(argv, path=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout


def test_broken_sqlite_migrations_leave_duckdb(broken_copy: tuple[Path, str]) -> None:
    root, _ = broken_copy
    url = f"duckdb://{root / 'archive.duckdb'}"
    result = run_cli(["migrate", "--url", url], path=root)
    assert result.returncode == 0, result.stderr
    result = run_cli(["stats", "--json", "--url", url], path=root)
    assert result.returncode == 0, result.stderr
    assert '"providers": []' in result.stdout


def test_broken_sqlite_migrations_leave_postgres(broken_copy: tuple[Path, str]) -> None:
    root, _ = broken_copy
    with support_postgres.fresh_schema() as schema:
        result = run_python(
            "from polylogue.storage.backends.postgresql.backend import PostgresBackend\n"
            f"backend = PostgresBackend({support_postgres.server_url()!r}, schema={schema!r})\n"
            "print(backend.stats())\n"
            "backend.close()",
            path=root,
        )
    assert result.returncode == 0, result.stderr
    assert "'providers': []" in result.stdout


def test_broken_sqlite_migrations_fail_sqlite_in_one_line(
    broken_copy: tuple[Path, str],
) -> None:
    root, blamed = broken_copy
    url = f"sqlite://{root / 'archive.db'}"
    result = run_cli(["migrate", "--url", url], path=root)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and blamed in line


def test_broken_sqlite_migrations_raise_migration_error(broken_copy: tuple[Path, str]) -> None:
    root, blamed = broken_copy
    url = f"sqlite://{root / 'archive.db'}"
    result = run_python(
        "from polylogue.errors import MigrationError\n"
        "from polylogue.storage.backends import create_backend\n"
        "try:\n"
        f"    create_backend(url={url!r})\n"
        "except MigrationError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    from polylogue.storage.db import SCHEMA_VERSION\n"
        "except MigrationError as exc:\n"
        "    print(exc)\n",
        path=root,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(blamed in line for line in lines), result.stdout
