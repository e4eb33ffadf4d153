"""create_backend: defaults, URLs, config objects, the environment, clear refusals."""

from __future__ import annotations

import stat
import sys
import tomllib
from pathlib import Path

import pytest

from polylogue.errors import ConfigurationError
from polylogue.storage.backends import (
    BackendConfig,
    SQLiteBackend,
    create_backend,
    default_db_path,
    parse_url,
    redact_url,
)


def test_default_is_sqlite_at_the_default_path(data_home: Path) -> None:
    backend = create_backend()
    try:
        assert isinstance(backend, SQLiteBackend)
        assert backend.db_path == data_home / "polylogue" / "polylogue.db" == default_db_path()
        assert stat.S_IMODE(default_db_path().stat().st_mode) == 0o600
    finally:
        backend.close()


def test_default_path_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local" / "share" / "polylogue" / "polylogue.db"


def test_environment_url_is_the_default(
    data_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("POLYLOGUE_DATABASE_URL", f"sqlite://{tmp_path / 'env.db'}")
    backend = create_backend()
    try:
        assert isinstance(backend, SQLiteBackend) and backend.db_path == tmp_path / "env.db"
    finally:
        backend.close()


def test_paths_urls_and_configs(tmp_path: Path) -> None:
    made = [
        create_backend(db_path=tmp_path / "a.db"),
        create_backend(f"sqlite://{tmp_path / 'b.db'}?synchronous=full&busy_timeout=2"),
        create_backend(url="sqlite://:memory:"),
        create_backend(
            BackendConfig(backend_type="sqlite", db_path=tmp_path / "c.db", synchronous="off")
        ),
    ]
    try:
        assert [getattr(b, "db_path", None) for b in made] == [
            tmp_path / "a.db",
            tmp_path / "b.db",
            None,
            tmp_path / "c.db",
        ]
        sqlite_made = [b for b in made if isinstance(b, SQLiteBackend)]
        assert [b.synchronous for b in sqlite_made] == ["normal", "full", "normal", "off"]
        assert sqlite_made[1].busy_timeout == 2
        with made[1]._reading("test") as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert all(b.schema_version() == b.migration_runner().target_version for b in made)
    finally:
        for b in made:
            b.close()


def test_refusals_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown database URL scheme 'mysql'"):
        create_backend("mysql://localhost/x")
    with pytest.raises(ConfigurationError, match="not a database URL"):
        create_backend("archive.db")
    with pytest.raises(ConfigurationError, match="unknown option"):
        create_backend(f"sqlite://{tmp_path}/a.db?journal=off")
    with pytest.raises(ConfigurationError, match="synchronous"):
        create_backend(f"sqlite://{tmp_path}/a.db?synchronous=sometimes")
    with pytest.raises(ConfigurationError, match="one of config, db_path or url"):
        create_backend(db_path=tmp_path / "a.db", url="sqlite://:memory:")


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # as if the extra were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'polylogue-storage\[duckdb\]'"):
        create_backend("duckdb://:memory:")
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'polylogue-storage\[postgresql\]'"):
        create_backend("postgresql://u@localhost/db")


def test_the_postgres_extra_is_an_alias_of_postgresql() -> None:
    # The extra is named like the dialect; ``postgres`` stays for existing installs.
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert extras["postgresql"] == extras["postgres"]
    assert any(dep.startswith("psycopg[") for dep in extras["postgresql"])


def test_urls_parse_and_passwords_are_redacted() -> None:
    config = parse_url(
        "postgresql://me:s3cret@db.example:5433/archive?pool_max_size=4&schema=mine&sslmode=require"
    )
    assert config.backend_type == "postgresql"
    assert (config.pool_max_size, config.schema_name) == (4, "mine")
    assert (
        config.url is not None
        and "sslmode=require" in config.url
        and "pool_max_size" not in config.url
    )
    assert (
        redact_url("postgresql://me:s3cret@db.example/archive")
        == "postgresql://me:***@db.example/archive"
    )
    assert redact_url("postgresql://db.example/archive") == "postgresql://db.example/archive"
    with pytest.raises(ConfigurationError) as info:
        parse_url("postgresql://me:s3cret@h/db?pool_max_size=zero")
    assert "s3cret" not in str(info.value)
    assert parse_url("duckdb://:memory:").db_path == Path(":memory:")
