"""Find the SQL that ships with the package, load a dialect's query set, check it.

The ``sql/`` and ``migrations/`` folders sit at the top of the repository and inside the
installed package (the wheel puts them at ``polylogue/sql`` and ``polylogue/migrations``).
:func:`resource_dir` finds them either way through :mod:`importlib.resources`, never
relative to the current directory.

A dialect's query set must define exactly the queries the binding calls, with the same
parameter lists and operations, each in the file its table family names. A DBA who renames
a parameter or drops a query gets a :class:`~polylogue.errors.QuerySetError` naming the file
and the query when the backend is created, not a ``TypeError`` in the middle of an import.

Overrides: a backend opened with ``sql_dir=`` (or, without one, with ``POLYLOGUE_SQL_DIR``
set) reads its queries from ``<sql_dir>/<dialect>/`` instead: an edited copy of the
packaged files, such as a query tuned for a big PostgreSQL. The copy is checked like the
packaged set, and a broken one is refused when the backend opens, the error naming the
override folder. Migrations are never overridden: the runner always applies the packaged
``migrations/`` scripts, so every archive of a version has the same schema whatever SQL
reads it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import aiosql
from aiosql.query_loader import QueryLoader
from aiosql.types import SQLOperationType
from aiosql.utils import SQLParseException

from polylogue.errors import ConfigurationError, QuerySetError

Operation = Literal["", "^", "$", "!", "*!", "#"]

_OPERATIONS: dict[SQLOperationType, Operation] = {
    SQLOperationType.SELECT: "",
    SQLOperationType.SELECT_ONE: "^",
    SQLOperationType.SELECT_VALUE: "$",
    SQLOperationType.INSERT_UPDATE_DELETE: "!",
    SQLOperationType.INSERT_UPDATE_DELETE_MANY: "*!",
    SQLOperationType.SCRIPT: "#",
}


@dataclass(frozen=True)
class QuerySpec:
    """What the binding expects of one named query: its file, parameters and operation.

    A ``bulk`` query writes many rows: as ``*!`` it runs once per row (executemany, each
    parameter one value); as ``!`` it runs once per batch with each parameter bound to the
    list of that column's values (``INSERT ... SELECT unnest(:message_id), ...``). The
    dialect's file picks one; the binding adapts. A ``returning`` bulk query may also be
    a columnar statement that returns rows (``RETURNING``, no suffix): what they are is
    the binding's contract with it (see ``upsert_messages``).
    """

    file: str
    params: tuple[str, ...] = ()
    operation: Operation = ""
    bulk: bool = False
    returning: bool = False

    def accepts(self, operation: Operation) -> bool:
        if self.bulk:
            return operation in ("*!", "!") or (self.returning and operation == "")
        return operation == self.operation


def resource_dir(kind: Literal["sql", "migrations"], dialect: str) -> Path:
    """The folder of ``kind`` for ``dialect``: in the installed package, else the checkout."""
    package = Path(str(resources.files("polylogue")))
    for base in (package, package.parent):
        candidate = base / kind / dialect
        if candidate.is_dir():
            return candidate
    raise QuerySetError(
        f"no {kind}/{dialect} folder next to the polylogue package ({package}); "
        "the installation is incomplete: reinstall polylogue-storage"
    )


@dataclass(frozen=True)
class ParsedQuery:
    """One named query as written: where it is, its declared parameters, its SQL text."""

    name: str
    path: Path
    line: int
    params: tuple[str, ...]
    operation: Operation
    sql: str


@dataclass(frozen=True)
class QueryProblem:
    """One way a query set differs from the binding, with its place.

    ``detail`` says what is wrong without the place; :attr:`text` is the line the loader's
    :class:`QuerySetError` lists. A query the binding does not use is a ``warning`` for
    ``polylogue sql check``; the loader refuses it all the same.
    """

    path: Path
    line: int | None
    name: str | None
    detail: str
    severity: Literal["error", "warning"] = "error"

    @property
    def text(self) -> str:
        if self.line is None:
            return f"{self.path.name}: {self.detail}"
        return f"{self.path.name}:{self.line}: query {self.name} {self.detail}"


_NAME_LINE = re.compile(r"--\s*name\s*:\s*(?P<name>[\w-]*)")


def parse_query_folder(folder: Path) -> tuple[list[ParsedQuery], list[QueryProblem]]:
    """The named queries of the ``*.sql`` files directly in ``folder`` (not sub-folders:
    those are aiosql namespaces, such as ``checks/``), and the ones aiosql cannot parse.

    Each query is parsed on its own, so that one broken query names its own line and the
    others are still checked.
    """
    loader = QueryLoader(_NoAdapter(), None, attribute=None)  # type: ignore[arg-type]
    parsed: list[ParsedQuery] = []
    problems: list[QueryProblem] = []
    for path in sorted(folder.glob("*.sql")):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        starts = [i for i, text in enumerate(lines) if _NAME_LINE.match(text.lstrip())]
        for n, start in enumerate(starts):
            stop = starts[n + 1] if n + 1 < len(starts) else len(lines)
            # Blank lines in front keep aiosql's line numbers those of the file.
            block = "\n" * start + "".join(lines[start:stop])
            try:
                data = loader.load_query_data_from_sql(block, [], path)
            except SQLParseException as exc:
                match = _NAME_LINE.match(lines[start].lstrip())
                name = match["name"].replace("-", "_") if match else None
                problems.append(QueryProblem(path, start + 1, name, f"cannot be parsed: {exc}"))
                continue
            for datum in data:
                parsed.append(
                    ParsedQuery(
                        name=datum.query_name,
                        path=path,
                        line=int(datum.floc[1]),
                        params=tuple(datum.parameters or ()),
                        operation=_OPERATIONS[datum.operation_type],
                        sql=datum.sql,
                    )
                )
    return parsed, problems


def query_set_problems(folder: Path, expected: Mapping[str, QuerySpec]) -> list[QueryProblem]:
    """Every way the query files in ``folder`` differ from ``expected``, with file and line."""
    parsed, problems = parse_query_folder(folder)
    found: dict[str, ParsedQuery] = {}
    for query in parsed:
        other = found.get(query.name)
        if other is not None:
            problems.append(
                QueryProblem(
                    query.path,
                    query.line,
                    query.name,
                    f"is also defined in {other.path.name}:{other.line};"
                    " names must be unique within a dialect",
                )
            )
            continue
        found[query.name] = query
    unparsed = {p.name for p in problems}
    for name, spec in expected.items():
        if name not in found:
            if name not in unparsed:
                problems.append(
                    QueryProblem(
                        folder / spec.file,
                        None,
                        name,
                        f"no query named {name} (the binding calls it)",
                    )
                )
            continue
        query = found[name]
        if query.path.name != spec.file:
            problems.append(QueryProblem(query.path, query.line, name, f"belongs in {spec.file}"))
        if query.params != spec.params:
            problems.append(
                QueryProblem(
                    query.path,
                    query.line,
                    name,
                    f"declares parameters ({', '.join(query.params)}) but the binding passes"
                    f" ({', '.join(spec.params)})",
                )
            )
        if not spec.accepts(query.operation):
            expected_ops = (
                ("'*!', '!' or (select)" if spec.returning else "'*!' or '!'")
                if spec.bulk
                else repr(spec.operation or "(select)")
            )
            problems.append(
                QueryProblem(
                    query.path,
                    query.line,
                    name,
                    f"has operation {query.operation or '(select)'!r}, expected {expected_ops}",
                )
            )
    for name, query in found.items():
        if name not in expected:
            problems.append(
                QueryProblem(query.path, query.line, name, "is not used by the binding", "warning")
            )
    return problems


def check_query_set(folder: Path, expected: Mapping[str, QuerySpec]) -> None:
    """Raise :class:`QuerySetError` unless ``folder`` defines exactly ``expected``."""
    problems = query_set_problems(folder, expected)
    if problems:
        listing = "\n  ".join(problem.text for problem in problems)
        raise QuerySetError(f"query set {folder} does not match the binding:\n  {listing}")


ENV_SQL_DIR = "POLYLOGUE_SQL_DIR"
"""Environment variable naming an override folder of queries (see the module docstring)."""


def sql_override(sql_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The override folder a backend reads its queries from: ``sql_dir`` when given, else
    ``$POLYLOGUE_SQL_DIR`` when set, else None (the packaged SQL)."""
    if sql_dir is None:
        sql_dir = os.environ.get(ENV_SQL_DIR) or None
    return None if sql_dir is None else Path(sql_dir).expanduser().absolute()


def query_dir(dialect: str, sql_dir: Path | None = None) -> Path:
    """The folder ``dialect``'s queries are read from: ``<sql_dir>/<dialect>`` for an
    override, else the packaged ``sql/<dialect>``."""
    if sql_dir is None:
        return resource_dir("sql", dialect)
    folder = sql_dir / dialect
    if not folder.is_dir():
        problem = f"has no {dialect}/ folder" if sql_dir.is_dir() else "does not exist"
        raise ConfigurationError(
            f"the SQL override folder {sql_dir} (sql_dir or ${ENV_SQL_DIR}) {problem}: copy"
            f" {resource_dir('sql', dialect)} to {folder} and edit the copy, or give no"
            " override to use the packaged SQL"
        )
    return folder


def load_queries(
    dialect: str,
    driver_adapter: str | Callable[..., Any],
    expected: Mapping[str, QuerySpec],
    sql_dir: Path | None = None,
) -> Any:
    """Check and load the named queries of ``dialect`` (an :class:`aiosql.Queries`):
    the packaged ones, or those of the override folder ``sql_dir`` (see
    :func:`sql_override`)."""
    folder = query_dir(dialect, sql_dir)
    return _load(
        folder,
        _stamp(folder),
        driver_adapter,
        tuple(sorted(expected.items())),
        sql_dir is not None,
    )


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each query file: part of the cache key, so
    that an override edited while a process runs is checked and loaded again."""
    stamps = []
    for path in sorted(folder.glob("*.sql")):
        found = path.stat()
        stamps.append((path.name, found.st_size, found.st_mtime_ns))
    return tuple(stamps)


@cache
def _load(
    folder: Path,
    _files: tuple[tuple[str, int, int], ...],
    driver_adapter: str | Callable[..., Any],
    expected: tuple[tuple[str, QuerySpec], ...],
    override: bool,
) -> Any:
    try:
        check_query_set(folder, dict(expected))
    except QuerySetError as exc:
        if not override:
            raise
        raise QuerySetError(
            f"the SQL override folder {folder.parent} (sql_dir or ${ENV_SQL_DIR}) was refused;"
            f" fix its {folder.name}/ files, or give no override to use the packaged SQL: {exc}"
        ) from None
    return aiosql.from_path(folder, driver_adapter)


class _NoAdapter:
    """Lets aiosql parse files for checking without binding them to a driver."""

    def process_sql(self, _query_name: str, _op_type: object, sql: str) -> str:
        return sql
