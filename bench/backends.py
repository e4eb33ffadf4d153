"""Fresh databases for each scenario, per backend."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polylogue.storage.backends import SQLBackend, create_backend


def available(postgres_url: str | None) -> list[str]:
    names = ["sqlite"]
    if importlib.util.find_spec("duckdb") and importlib.util.find_spec(
        "polylogue.storage.backends.duckdb.backend"
    ):
        names.append("duckdb")
    if postgres_url and importlib.util.find_spec("polylogue.storage.backends.postgresql.backend"):
        names.append("postgres")
    return names


@contextmanager
def open_fresh(
    name: str, workdir: str | Path, postgres_url: str | None = None
) -> Iterator[SQLBackend]:
    """A new, empty, migrated database of backend ``name`` (dropped or left in workdir)."""
    with fresh_database(name, workdir, postgres_url) as (_url, backend):
        yield backend


@contextmanager
def fresh_database(
    name: str, workdir: str | Path, postgres_url: str | None = None
) -> Iterator[tuple[str, SQLBackend]]:
    """:func:`open_fresh`, with the URL that opens the same database again."""
    tag = uuid.uuid4().hex[:10]
    if name == "sqlite":
        url = f"sqlite://{Path(workdir) / f'bench-{tag}.db'}"
    elif name == "duckdb":
        url = f"duckdb://{Path(workdir) / f'bench-{tag}.duckdb'}"
    elif name == "postgres":
        if not postgres_url:
            raise ValueError("postgres needs --postgres-url")
        sep = "&" if "?" in postgres_url else "?"
        url = f"{postgres_url}{sep}schema=bench_{tag}"
    else:
        raise ValueError(f"unknown backend {name!r}")
    backend = create_backend(url)
    try:
        yield url, backend
    finally:
        if name == "postgres":
            from bench.pg_probe import PROBE_SQL

            with backend.pool.connection() as conn:  # type: ignore[attr-defined]
                PROBE_SQL.drop_current_schema(conn)
        backend.close()
