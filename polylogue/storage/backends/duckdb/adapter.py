"""The aiosql adapter for DuckDB: runs on exactly the connection it is given.

aiosql's own DuckDB adapter cannot serve inside a transaction: with ``use_cursor=True``
every query runs on ``conn.cursor()``, a duplicate connection that does not see (and is
not part of) the transaction the backend opened; with ``use_cursor=False`` its write
methods close the connection they were handed. This one executes on the connection (a
per-thread DuckDB cursor) it receives, closes nothing, returns rows as dicts and returns
the affected-row count DuckDB reports as a one-row ``Count`` result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiosql.utils import VAR_REF


def _colon_to_dollar(match: Any) -> str:
    """``:name`` becomes DuckDB's ``$name``; quoted text is left as it is."""
    groups = match.groupdict()
    if groups["dquote"] is not None:
        return str(groups["dquote"])
    if groups["squote"] is not None:
        return str(groups["squote"])
    return f"{groups['lead']}${groups['var_name']}"


def _dicts(conn: Any, found: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = [column[0] for column in conn.description or ()]
    return [dict(zip(names, row, strict=True)) for row in found]


class DuckDBConnectionAdapter:
    """aiosql's sync adapter protocol over one DuckDB connection or cursor."""

    def process_sql(self, query_name: str, op_type: Any, sql: str) -> str:
        return str(VAR_REF.sub(_colon_to_dollar, sql))

    def select(
        self,
        conn: Any,
        query_name: str,
        sql: str,
        parameters: Any,
        record_class: Any = None,
    ) -> list[dict[str, Any]]:
        # Eager on purpose: a lazy generator could outlive the transaction it read in.
        conn.execute(sql, parameters)
        return _dicts(conn, conn.fetchall())

    def select_one(
        self,
        conn: Any,
        query_name: str,
        sql: str,
        parameters: Any,
        record_class: Any = None,
    ) -> dict[str, Any] | None:
        conn.execute(sql, parameters)
        row = conn.fetchone()
        return None if row is None else _dicts(conn, [row])[0]

    def select_value(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        row = conn.execute(sql, parameters).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def select_cursor(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Iterator[Any]:
        yield conn.execute(sql, parameters)

    def insert_update_delete(self, conn: Any, query_name: str, sql: str, parameters: Any) -> int:
        return _count(conn.execute(sql, parameters))

    def insert_update_delete_many(
        self, conn: Any, query_name: str, sql: str, parameters: Any
    ) -> int:
        # Row by row: the DuckDB query files use columnar ``!`` bulk queries instead.
        return sum(_count(conn.execute(sql, row)) for row in parameters)

    def insert_returning(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        row = conn.execute(sql, parameters).fetchone()
        if row is None:
            return None
        return row[0] if len(row) == 1 else row

    def execute_script(self, conn: Any, sql: str) -> str:
        conn.execute(sql)
        return "DONE"


def _count(conn: Any) -> int:
    """The affected-row count of the statement just run (-1 when it reports none)."""
    if not conn.description:
        return -1
    row = conn.fetchone()
    return -1 if row is None else int(row[0])
