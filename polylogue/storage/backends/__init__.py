"""Storage backends and the factory that picks one.

``create_backend()`` opens SQLite at :func:`default_db_path` unless
``POLYLOGUE_DATABASE_URL`` names another database; ``create_backend(db_path=...)``,
``create_backend("postgresql://...")``/``create_backend(url=...)`` and
``create_backend(BackendConfig(...))`` choose explicitly; ``sql_dir=`` (or
``POLYLOGUE_SQL_DIR``) reads the queries from an edited copy (see
:mod:`polylogue.storage.sqlfiles`). A backend whose optional
dependency is missing raises :class:`~polylogue.errors.ConfigurationError` saying which
extra to install.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from polylogue.errors import ConfigurationError
from polylogue.storage.backends.base import SQLBackend
from polylogue.storage.backends.config import (
    ENV_DATABASE_URL,
    BackendConfig,
    BackendType,
    default_db_path,
    parse_url,
    redact_url,
)
from polylogue.storage.backends.sqlite.backend import SQLiteBackend

_OPTIONAL: dict[str, tuple[str, str, str, str]] = {
    # backend_type: (module, class, driver import name, extra)
    "postgresql": (
        "polylogue.storage.backends.postgresql.backend",
        "PostgresBackend",
        "psycopg",
        "postgresql",
    ),
    "duckdb": ("polylogue.storage.backends.duckdb.backend", "DuckDBBackend", "duckdb", "duckdb"),
}


def create_backend(
    config: BackendConfig | str | None = None,
    *,
    db_path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    migrate: bool = True,
    backup: bool = True,
    read_only: bool = False,
    sql_dir: str | os.PathLike[str] | None = None,
) -> SQLBackend:
    """Open the backend a config, URL or path describes (see the module docstring).

    ``migrate=False`` opens without applying pending migrations (``polylogue status``);
    ``backup=False`` migrates a SQLite file without copying it aside first;
    ``read_only=True`` (or ``?read_only=true`` in a SQLite or DuckDB URL) opens an
    existing file without writing it: a missing one raises
    :class:`~polylogue.errors.DatabaseNotFoundError`, and one that needs migrating
    raises :class:`~polylogue.errors.MigrationError` unless ``migrate=False``. A
    PostgreSQL database is never migrated by a read-only open. ``sql_dir`` is a folder of
    ``<dialect>/`` query files used instead of the packaged ones (default
    ``$POLYLOGUE_SQL_DIR``; migrations stay the packaged ones).
    """
    if isinstance(config, str):
        if url is not None:
            raise ConfigurationError("give the URL once: positionally or as url=")
        url, config = config, None
    chosen = [
        name
        for name, value in (("config", config), ("db_path", db_path), ("url", url))
        if value is not None
    ]
    if len(chosen) > 1:
        raise ConfigurationError(f"give one of config, db_path or url, not {' and '.join(chosen)}")
    if config is None:
        if url is not None:
            config = parse_url(url)
        elif db_path is not None:
            config = BackendConfig(backend_type="sqlite", db_path=Path(db_path))
        elif os.environ.get(ENV_DATABASE_URL):
            config = parse_url(os.environ[ENV_DATABASE_URL])
        else:
            config = BackendConfig(backend_type="sqlite", db_path=default_db_path())
    if read_only and not config.read_only:
        config = config.model_copy(update={"read_only": True})
    if sql_dir is not None:
        config = config.model_copy(update={"sql_dir": Path(sql_dir)})
    return open_backend(config, migrate=migrate, backup=backup)


def open_backend(config: BackendConfig, *, migrate: bool = True, backup: bool = True) -> SQLBackend:
    """The backend for a :class:`BackendConfig`."""
    if config.backend_type == "sqlite":
        return SQLiteBackend(
            config.db_path or default_db_path(),
            synchronous=config.synchronous,
            busy_timeout=config.busy_timeout,
            migrate=migrate,
            backup=backup,
            read_only=config.read_only,
            sql_dir=config.sql_dir,
        )
    cls = _optional_backend_class(config.backend_type)
    # PostgreSQL has no read-only open: not migrating is what read_only asks of it.
    migrate = migrate and not (config.read_only and config.backend_type == "postgresql")
    backend: SQLBackend = cls.from_config(config, migrate=migrate)
    return backend


def backend_class(backend_type: BackendType) -> type[SQLBackend]:
    """The backend class of a dialect (its capabilities and ``expected_queries()``),
    without opening anything; ConfigurationError when its driver is not installed."""
    if backend_type == "sqlite":
        return SQLiteBackend
    found: type[SQLBackend] = _optional_backend_class(backend_type)
    return found


def _optional_backend_class(backend_type: str) -> Any:
    module_name, class_name, driver, extra = _OPTIONAL[backend_type]
    try:
        importlib.import_module(driver)
    except ImportError:
        raise ConfigurationError(
            f"the {backend_type} backend needs the {driver!r} package: install it with"
            f" pip install 'polylogue-storage[{extra}]' (in a checkout of polylogue-storage:"
            f" pip install -e '.[{extra}]')"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigurationError(
            f"this version of polylogue has no {backend_type} backend yet"
        ) from None
    return getattr(module, class_name)


__all__ = [
    "BackendConfig",
    "SQLBackend",
    "SQLiteBackend",
    "backend_class",
    "create_backend",
    "default_db_path",
    "open_backend",
    "parse_url",
    "redact_url",
]
