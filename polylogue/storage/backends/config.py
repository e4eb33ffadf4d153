"""Which database to open: URLs, the typed config object, the default path.

URLs: ``sqlite:///abs/path.db`` (everything after ``sqlite://`` is the path, so
``sqlite://relative.db`` is relative), ``sqlite://:memory:``, ``duckdb:///path``,
``duckdb://:memory:``, ``postgresql://user:pw@host:port/db`` (also ``postgres://``).
Options go in the query string: ``?synchronous=full&busy_timeout=5`` for SQLite,
``?pool_min_size=1&pool_max_size=10&schema=archive`` for PostgreSQL (other parameters
pass through to libpq), ``?read_only=true&memory_limit=1GB`` for DuckDB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polylogue.errors import ConfigurationError

BackendType = Literal["sqlite", "postgresql", "duckdb"]
ENV_DATABASE_URL = "POLYLOGUE_DATABASE_URL"
MEMORY = ":memory:"


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/polylogue/polylogue.db``, else ``~/.local/share/polylogue/...``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "polylogue" / "polylogue.db"


class BackendConfig(BaseModel):
    """Everything needed to open a backend; ``backend_type`` picks the dialect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


_SCHEMES: dict[str, BackendType] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "duckdb": "duckdb",
}
_SQLITE_OPTIONS = {"synchronous", "busy_timeout"}
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
                f"unknown option(s) {', '.join(unknown)} in {url!r}; {backend_type} URLs"
                f" take {', '.join(sorted(allowed))}"
            )
        if not path:
            raise ConfigurationError(f"{url!r} names no database file (or :memory:)")
        return BackendConfig.model_validate(
            {"backend_type": backend_type, "db_path": path, **options}
        )
    except ValidationError as exc:
        raise ConfigurationError(f"bad option in {redact_url(url)!r}: {exc}") from None


def _parse_postgres(url: str) -> BackendConfig:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {_POSTGRES_OPTIONS[k]: v for k, v in query if k in _POSTGRES_OPTIONS}
    passthrough = [(k, v) for k, v in query if k not in _POSTGRES_OPTIONS]
    dsn = urlunsplit(parts._replace(query=urlencode(passthrough)))
    return BackendConfig.model_validate({"backend_type": "postgresql", "url": dsn, **options})


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))
