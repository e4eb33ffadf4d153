"""Find the SQL that ships with the package, load a dialect's query set, check it.

The ``sql/`` and ``migrations/`` folders sit at the top of the repository and inside the
installed package (the wheel puts them at ``polylogue/sql`` and ``polylogue/migrations``).
:func:`resource_dir` finds them either way through :mod:`importlib.resources`, never
relative to the current directory.

A dialect's query set must define exactly the queries the binding calls, with the same
parameter lists and operations, each in the file its table family names. A DBA who renames
a parameter or drops a query gets a :class:`~polylogue.errors.QuerySetError` naming the file
and the query when the backend is created, not a ``TypeError`` in the middle of an import.
"""

from __future__ import annotations

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

from polylogue.errors import QuerySetError

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


def check_query_set(folder: Path, expected: Mapping[str, QuerySpec]) -> None:
    """Raise :class:`QuerySetError` unless ``folder`` defines exactly ``expected``."""
    loader = QueryLoader(_NoAdapter(), None, attribute=None)  # type: ignore[arg-type]
    found: dict[str, tuple[Path, int, tuple[str, ...], Operation]] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.sql")):
        try:
            data = loader.load_query_data_from_file(path)
        except SQLParseException as exc:
            raise QuerySetError(f"{path}: {exc}") from None
        for datum in data:
            name = datum.query_name
            file, line = datum.floc
            if name in found:
                other = found[name]
                problems.append(
                    f"{path.name}:{line}: query {name} is also defined in {other[0].name}:"
                    f"{other[1]}; names must be unique within a dialect"
                )
                continue
            params = tuple(datum.parameters or ())
            found[name] = (Path(file), int(line), params, _OPERATIONS[datum.operation_type])
    for name, spec in expected.items():
        if name not in found:
            problems.append(f"{spec.file}: no query named {name} (the binding calls it)")
            continue
        path, line, params, operation = found[name]
        where = f"{path.name}:{line}: query {name}"
        if path.name != spec.file:
            problems.append(f"{where} belongs in {spec.file}")
        if params != spec.params:
            problems.append(
                f"{where} declares parameters ({', '.join(params)}) but the binding passes"
                f" ({', '.join(spec.params)})"
            )
        if not spec.accepts(operation):
            expected_ops = (
                ("'*!', '!' or (select)" if spec.returning else "'*!' or '!'")
                if spec.bulk
                else repr(spec.operation or "(select)")
            )
            problems.append(
                f"{where} has operation {operation or '(select)'!r}, expected {expected_ops}"
            )
    for name, (path, line, _params, _op) in found.items():
        if name not in expected:
            problems.append(f"{path.name}:{line}: query {name} is not used by the binding")
    if problems:
        listing = "\n  ".join(problems)
        raise QuerySetError(f"query set {folder} does not match the binding:\n  {listing}")


def load_queries(
    dialect: str,
    driver_adapter: str | Callable[..., Any],
    expected: Mapping[str, QuerySpec],
) -> Any:
    """Check and load the named queries of ``dialect`` (an :class:`aiosql.Queries`)."""
    return _load(dialect, driver_adapter, tuple(sorted(expected.items())))


@cache
def _load(
    dialect: str,
    driver_adapter: str | Callable[..., Any],
    expected: tuple[tuple[str, QuerySpec], ...],
) -> Any:
    folder = resource_dir("sql", dialect)
    check_query_set(folder, dict(expected))
    return aiosql.from_path(folder, driver_adapter)


class _NoAdapter:
    """Lets aiosql parse files for checking without binding them to a driver."""

    def process_sql(self, _query_name: str, _op_type: object, sql: str) -> str:
        return sql
