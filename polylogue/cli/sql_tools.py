"""``polylogue sql new-migration``, ``show`` and ``explain``: the DBA's everyday tools.

They exist so that someone who edits ``sql/`` and ``migrations/`` never has to read the
Python to know what to write, what runs, or how the database runs it:

``polylogue sql new-migration add_message_index`` creates the next-numbered script
(``migrations/<dialect>/0005_add_message_index.sql``) in every dialect folder of the
checkout at once, each with a header saying what to write there; it refuses a bad slug,
a number some dialect already has, and an installed package (which has no checkout to add
to; ``--migrations-dir`` points it elsewhere).

``polylogue sql show save_messages [--dialect duckdb]`` prints, with ``file:line`` before
each, the queries a protocol method runs on each dialect (from
:data:`polylogue.storage.queries.METHOD_QUERIES`, resolved by the dialect's capabilities,
with the reads a dialect makes before writing);
``polylogue sql show get_messages`` prints one named query. Both read the override folder
of ``--sql-dir`` or ``$POLYLOGUE_SQL_DIR`` when one is set, as a backend would.

``polylogue sql explain get_messages --url sqlite:///archive.db --param
conversation_id=c1`` prints the database's plan for a named query, its parameters bound
(values parsed as JSON when they parse, else taken as strings; missing ones are NULL).
The database is opened read-only: never created, never migrated; the query is planned,
not run.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import click

from polylogue.cli.common import URL_HELP
from polylogue.storage.backends import SQLBackend, backend_class, create_backend
from polylogue.storage.backends.config import BackendType
from polylogue.storage.faults import cleaning_up
from polylogue.storage.queries import METHOD_QUERIES
from polylogue.storage.sqlfiles import (
    ParsedQuery,
    parse_query_folder,
    query_dir,
    sql_override,
)

DIALECTS: tuple[BackendType, ...] = get_args(BackendType)
SLUG = re.compile(r"[a-z0-9][a-z0-9_]*")
"""A migration's slug, as :func:`~polylogue.storage.migration_scripts.discover` reads it."""
_NUMBERED = re.compile(r"(?P<version>\d{4})_")

_EXPLAIN: dict[str, str] = {
    "sqlite": "EXPLAIN QUERY PLAN",
    "postgresql": "EXPLAIN",
    "duckdb": "EXPLAIN",
}
"""The one SQL word this module adds, in front of a query from a ``.sql`` file: SQLite's
plain EXPLAIN shows bytecode, its plan is EXPLAIN QUERY PLAN. Neither runs the query."""

sql_dir_option = click.option(
    "--sql-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of <dialect>/ query files to use instead of the packaged ones"
    " (default: $POLYLOGUE_SQL_DIR, else the packaged SQL).",
)


# -- new-migration ------------------------------------------------------------------------


def checkout_migrations_dir() -> Path:
    """The checkout's ``migrations/`` (beside ``pyproject.toml`` and the package).

    An installed package has its migrations inside it, where a new script would be lost
    at the next install: that is refused, naming where it looked.
    """
    package = Path(str(resources.files("polylogue")))
    root = package.parent
    folder = root / "migrations"
    if (root / "pyproject.toml").is_file() and folder.is_dir():
        return folder
    raise click.ClickException(
        f"no checkout of polylogue-storage found: looked for {folder} beside"
        f" {root / 'pyproject.toml'} (the package is {package}); new migrations are written"
        " in a checkout (git clone, pip install -e .), or give --migrations-dir"
    )


def migration_header(number: str, slug: str, dialect: str, dialects: Sequence[str]) -> str:
    """The comment a new script starts with: what to write, and that dialects move together."""
    return (
        f"-- {number}_{slug}: (say in one line what this changes in the schema)\n"
        "--\n"
        f"-- Write {dialect}'s statements for this schema change below, each ending in ';'.\n"
        f"-- Every dialect folder got a {number}_{slug}.sql in the same change"
        f" ({', '.join(dialects)}):\n"
        "-- the dialects change together, so write each of them and keep their schemas"
        " alike.\n"
        "-- Never edit a script once it has been applied somewhere: add another one.\n"
        "-- `polylogue sql check` reports a script that is still empty (only comments).\n"
    )


@click.command("new-migration")
@click.argument("slug")
@click.option(
    "--migrations-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The migrations/ folder to add to (default: the checkout's).",
)
def new_migration(slug: str, migrations_dir: Path | None) -> None:
    """Create the next-numbered script NNNN_SLUG.sql in every dialect's folder."""
    if not SLUG.fullmatch(slug):
        raise click.BadParameter(
            f"{slug!r}: a slug is lower-case letters, digits and underscores, starting with"
            " a letter or digit (for example add_message_index)",
            param_hint="SLUG",
        )
    root = migrations_dir or checkout_migrations_dir()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise click.ClickException(f"{root} holds no dialect folders (sqlite/, postgresql/, ...)")
    numbers: dict[Path, dict[int, Path]] = {
        folder: {
            int(match["version"]): path
            for path in sorted(folder.glob("*.sql"))
            if (match := _NUMBERED.match(path.name))
        }
        for folder in folders
    }
    for scripts in numbers.values():
        for path in scripts.values():
            if path.stem[5:] == slug:
                raise click.ClickException(
                    f"{path}: a migration named {slug} exists already; choose another slug"
                )
    newest = {folder: max(scripts, default=0) for folder, scripts in numbers.items()}
    top = max(newest.values())
    behind = [folder.name for folder, n in newest.items() if n < top]
    if behind:
        ahead = [str(numbers[f][top]) for f in folders if top in numbers[f]]
        raise click.ClickException(
            f"number {top:04d} exists already ({', '.join(ahead)}) but not in"
            f" {', '.join(behind)}: a migration is added to every dialect at once; finish"
            " that one in every dialect (or remove it) first"
        )
    number = f"{top + 1:04d}"
    created: list[Path] = []
    dialects = [folder.name for folder in folders]
    try:
        for folder in folders:
            path = folder / f"{number}_{slug}.sql"
            with path.open("x", encoding="utf-8") as out:
                created.append(path)
                out.write(migration_header(number, slug, folder.name, dialects))
    except FileExistsError as exc:
        for path in created:
            path.unlink()
        raise click.ClickException(
            f"{exc.filename} exists already (written meanwhile?); nothing was created"
        ) from None
    except BaseException as exc:
        with cleaning_up(exc, "removing the scripts created so far"):
            for path in created:
                path.unlink(missing_ok=True)
        raise
    for path in created:
        click.echo(str(path))


# -- show ---------------------------------------------------------------------------------


class _Folder:
    """One dialect's query files as written: each query with its place and raw text."""

    def __init__(self, dialect: BackendType, sql_dir: Path | None) -> None:
        self.dialect = dialect
        self.folder = query_dir(dialect, sql_dir)
        parsed, problems = parse_query_folder(self.folder)
        self.queries: dict[str, ParsedQuery] = {}
        for query in parsed:
            self.queries.setdefault(query.name, query)
        # Every query header's line, parsed or not: where each query's text ends.
        self._starts: dict[Path, list[int]] = {}
        for path, line in [(q.path, q.line) for q in parsed] + [
            (p.path, p.line) for p in problems if p.line is not None
        ]:
            self._starts.setdefault(path, []).append(line)

    def text(self, query: ParsedQuery) -> str:
        """The query as its file has it: header, comments and SQL."""
        lines = query.path.read_text(encoding="utf-8").splitlines()
        after = [n for n in self._starts.get(query.path, []) if n > query.line]
        stop = min(after, default=len(lines) + 1)
        return "\n".join(lines[query.line - 1 : stop - 1]).rstrip()


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _unknown(name: str, known: Iterable[str], what: str) -> click.ClickException:
    close = difflib.get_close_matches(name, sorted(set(known)), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return click.ClickException(f"{name!r} is no {what}{hint}")


@click.command("show")
@click.argument("name", metavar="METHOD_OR_QUERY")
@click.option(
    "--dialect", type=click.Choice(DIALECTS), default=None, help="One dialect (default: all)."
)
@sql_dir_option
def show(name: str, dialect: BackendType | None, sql_dir: Path | None) -> None:
    """Print the SQL a protocol method runs, or one named query, with file:line."""
    override = sql_override(sql_dir)
    dialects = [dialect] if dialect else list(DIALECTS)
    folders = [_Folder(d, override) for d in dialects]
    is_method = name in METHOD_QUERIES
    if not is_method and not any(name in f.queries for f in folders):
        others = [_Folder(d, override) for d in DIALECTS if d not in dialects]
        having = [f.dialect for f in others if name in f.queries]
        if having:
            raise click.ClickException(
                f"{', '.join(dialects)} has no query {name}; {', '.join(having)} has:"
                f" polylogue sql show {name} --dialect {having[0]}"
            )
        known = list(METHOD_QUERIES) + [q for f in folders + others for q in f.queries]
        raise _unknown(name, known, "protocol method or named query")
    for found in folders:
        if is_method:
            names = backend_class(found.dialect).method_queries(name)
            click.echo(
                f"-- {found.dialect}: {name} runs {', '.join(names) or 'no query'}"
                " (those its data calls for, in this order)"
            )
        else:
            names = (name,)
        for query_name in names:
            query = found.queries.get(query_name)
            if query is None:
                click.echo(f"-- {found.dialect}: {found.folder} defines no query {query_name}")
                continue
            click.echo(f"-- {_shown_path(query.path)}:{query.line}")
            click.echo(found.text(query))
            click.echo("")


# -- explain ------------------------------------------------------------------------------


def parse_params(pairs: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs as the query's parameters: JSON values where they parse, else the
    text; every parameter not given is NULL."""
    given: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        if key not in names:
            raise click.BadParameter(
                f"{key!r} is no parameter of the query; it takes ({', '.join(names) or 'none'})",
                param_hint="--param",
            )
        try:
            given[key] = json.loads(raw)
        except ValueError:
            given[key] = raw
    return {key: given.get(key) for key in names}


def plan_lines(dialect: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The plan's rows as text: SQLite's (id, parent, detail) rows as an indented tree;
    PostgreSQL's and DuckDB's rows are lines of text in their last column."""
    if dialect != "sqlite":
        return [str(list(row.values())[-1]) for row in rows]
    depth: dict[int, int] = {0: -1}
    lines = []
    for row in rows:
        level = depth.get(int(row["parent"]), -1) + 1
        depth[int(row["id"])] = level
        lines.append(f"{'  ' * level}{row['detail']}")
    return lines


@click.command("explain")
@click.argument("query_name", metavar="QUERY")
@click.option("--url", default=None, help=URL_HELP)
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter (repeatable)."
)
@sql_dir_option
def explain(
    query_name: str, url: str | None, params: tuple[str, ...], sql_dir: Path | None
) -> None:
    """Print the database's plan for a named query (read-only; the query does not run)."""
    backend = create_backend(url, migrate=False, read_only=True, sql_dir=sql_dir)
    try:
        _explain(backend, query_name, params)
    except BaseException as exc:
        with cleaning_up(exc, "closing the database"):
            backend.close()
        raise
    backend.close()


def _explain(backend: SQLBackend, query_name: str, pairs: Sequence[str]) -> None:
    expected = backend.expected_queries()
    spec = expected.get(query_name)
    if spec is None:
        raise _unknown(query_name, expected, f"named query of {backend.dialect}")
    if spec.operation == "#":
        raise click.ClickException(f"{query_name} is a script ('#'): it has no plan to show")
    query = getattr(backend.queries, query_name)
    params = parse_params(pairs, spec.params)
    verb = _EXPLAIN[backend.dialect]
    adapter = backend.queries.driver_adapter
    # The backend's own connection and error translation: a failure names the database.
    with backend._reading(f"explain {query_name}") as conn:
        rows = [
            dict(row) for row in adapter.select(conn, query_name, f"{verb} {query.sql}", params)
        ]
    click.echo(f"-- {verb} {query_name} on {backend.describe()}")
    for line in plan_lines(backend.dialect, rows):
        click.echo(line)


__all__ = [
    "checkout_migrations_dir",
    "explain",
    "new_migration",
    "show",
]
