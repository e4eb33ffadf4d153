"""Which database to open: URLs, the typed config object, the default path.

URLs: ``sqlite:///abs/path.db`` (everything after ``sqlite://`` is the path, so
``sqlite://relative.db`` is relative), ``sqlite://:memory:``, ``duckdb:///path``,
``duckdb://:memory:``, ``postgresql://user:pw@host:port/db`` (also ``postgres://``).
Options go in the query string: ``?synchronous=full&busy_timeout=5`` for SQLite,
``?pool_min_size=1&pool_max_size=10&schema=archive`` for PostgreSQL (other parameters
pass through to libpq), ``?read_only=true&memory_limit=1GB`` for DuckDB.

PostgreSQL URLs are read strictly and rewritten in one canonical spelling
(:mod:`~polylogue.storage.backends.postgresql.url`). A password never appears in what
this module shows: :func:`redact_url`, the ``repr`` of :class:`BackendConfig` and its
validation errors (which leave input values out).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from polylogue.errors import ConfigurationError
from polylogue.storage.backends.postgresql.url import (
    is_postgres_url,
    parse_postgres_url,
    redact_postgres_url,
)

BackendType = Literal["sqlite", "postgresql", "duckdb"]
ENV_DATABASE_URL = "POLYLOGUE_DATABASE_URL"
MEMORY = ":memory:"


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/polylogue/polylogue.db``, else ``~/.local/share/polylogue/...``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "polylogue" / "polylogue.db"


class BackendConfig(BaseModel):
    """Everything needed to open a backend; ``backend_type`` picks the dialect."""

    # Validation errors quote no input: a URL holds a password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    backend_type: BackendType = "sqlite"
    db_path: Path | None = None
    """SQLite or DuckDB file (``":memory:"`` for a throwaway database)."""
    url: str | None = None
    """PostgreSQL connection string (``postgresql://...``), without pool options."""
    synchronous: Literal["off", "normal", "full"] = "normal"
    busy_timeout: float = Field(default=30.0, ge=0)
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    schema_name: str = Field(default="public", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    read_only: bool = False
    memory_limit: str | None = None
    sql_dir: Path | None = None
    """An override folder holding ``<dialect>/`` copies of the query files (default
    ``$POLYLOGUE_SQL_DIR``, else the packaged SQL); migrations are never overridden
    (:mod:`polylogue.storage.sqlfiles`)."""

    @field_validator("url")
    @classmethod
    def _canonical_url(cls, url: str | None) -> str | None:
        """A PostgreSQL URL in its canonical spelling; an ambiguous one is refused."""
        return parse_postgres_url(url).dsn() if url and is_postgres_url(url) else url

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" and value else value)


_SCHEMES: dict[str, BackendType] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "duckdb": "duckdb",
}
_SQLITE_OPTIONS = {"synchronous", "busy_timeout", "read_only"}
_DUCKDB_OPTIONS = {"read_only", "memory_limit"}
_POSTGRES_OPTIONS = {
    "pool_min_size": "pool_min_size",
    "pool_max_size": "pool_max_size",
    "schema": "schema_name",
}


def parse_url(url: str) -> BackendConfig:
    """The :class:`BackendConfig` a database URL describes."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"not a database URL: {redact_url(url)!r}; expected sqlite:///path,"
            " postgresql://user@host/db or duckdb:///path"
        )
    backend_type = _SCHEMES.get(scheme.lower())
    if backend_type is None:
        raise ConfigurationError(
            f"unknown database URL scheme {scheme!r} in {redact_url(url)!r}; use sqlite://,"
            " postgresql:// or duckdb://"
        )
    try:
        if backend_type == "postgresql":
            return _parse_postgres(url)
        path, _, query = rest.partition("?")
        options = dict(parse_qsl(query, keep_blank_values=True))
        allowed = _SQLITE_OPTIONS if backend_type == "sqlite" else _DUCKDB_OPTIONS
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} in {redact_url(url)!r};"
                f" {backend_type} URLs take {', '.join(sorted(allowed))}"
            )
        if not path:
            raise ConfigurationError(f"{redact_url(url)!r} names no database file (or :memory:)")
        return BackendConfig.model_validate(
            {"backend_type": backend_type, "db_path": path, **options}
        )
    except ValidationError as exc:
        problem = validation_summary(exc)
    raise ConfigurationError(f"bad option in {redact_url(url)!r}: {problem}")


def _parse_postgres(url: str) -> BackendConfig:
    parsed = parse_postgres_url(url)
    options = {_POSTGRES_OPTIONS[k]: v for k, v in parsed.options if k in _POSTGRES_OPTIONS}
    dsn = parsed.dsn(without=frozenset(_POSTGRES_OPTIONS))
    return BackendConfig.model_validate({"backend_type": "postgresql", "url": dsn, **options})


def validation_summary(exc: ValidationError) -> str:
    """A pydantic error on one line: ``field: problem; ...`` (inputs are never quoted)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )


PASSWORD_SETTING = re.compile(r"""(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)""")
"""``password=...`` in a key=value connection string or a URL query."""


def redact_url(url: str) -> str:
    """``url`` (or a key=value connection string) with every password replaced by ``***``.

    A PostgreSQL URL that cannot be read one way only shows its scheme alone.
    """
    if is_postgres_url(url):
        return redact_postgres_url(url)
    shown = url
    if "://" in url:
        try:
            parts = urlsplit(url)
            if parts.password is not None:
                host = parts.netloc.rpartition("@")[2]
                user = (parts.username or "") + ":***"
                shown = urlunsplit(parts._replace(netloc=f"{user}@{host}"))
        except ValueError:
            return f"{url.partition('://')[0]}://(not shown: it cannot be read)"
    return PASSWORD_SETTING.sub(r"\1***", shown)
