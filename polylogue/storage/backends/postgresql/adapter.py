"""The aiosql adapter for PostgreSQL: every value goes in and comes out as it was saved.

PostgreSQL cannot hold some values as Python gives them (U+0000 in text and JSON, floats
with a large exponent in ``jsonb``; :mod:`~polylogue.storage.backends.postgresql.values`
says how they are stored instead). The conversion lives in the driver adapter, as the
other dialects' extensions do (``RowAwareSQLite3Adapter``, ``DuckDBConnectionAdapter``),
so that no query can reach the driver around it: parameters of every query kind are
stored in that form, rows (dicts, from psycopg's ``dict_row``) and values read back are
unescaped, and ``jsonb`` values are unescaped by the loader :func:`prepare_connection`
installs. Statements the binding pipelines (:meth:`FaithfulPsycopgAdapter.send`) store
their parameters here too.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from aiosql.adapters.pyformat import PyFormatAdapter
from psycopg.types.json import set_json_loads

from polylogue.storage.backends.postgresql.arrays import ColumnDumper
from polylogue.storage.backends.postgresql.values import (
    loads_json,
    store_parameter,
    store_parameters,
    unescape_row,
)


def _stored(parameters: Any) -> Any:
    """Bound parameters in stored form (named, as aiosql passes them, or positional)."""
    if isinstance(parameters, dict):
        return store_parameters(parameters)
    if isinstance(parameters, list | tuple):
        return [store_parameter("", value) for value in parameters]
    return parameters


class FaithfulPsycopgAdapter(PyFormatAdapter):
    """aiosql's psycopg adapter, storing parameters and reading results faithfully."""

    @property
    def _driver(self) -> Any:
        """aiosql's own methods (untyped), which run a query once its values are stored."""
        return super()

    def select(
        self,
        conn: Any,
        query_name: str,
        sql: str,
        parameters: Any,
        record_class: Any = None,
    ) -> Generator[Any, None, None]:
        for row in self._driver.select(conn, query_name, sql, _stored(parameters), record_class):
            yield unescape_row(row)

    def select_one(
        self,
        conn: Any,
        query_name: str,
        sql: str,
        parameters: Any,
        record_class: Any = None,
    ) -> Any:
        row = self._driver.select_one(conn, query_name, sql, _stored(parameters), record_class)
        return unescape_row(row)

    def select_value(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        return unescape_row(self._driver.select_value(conn, query_name, sql, _stored(parameters)))

    @contextmanager
    def select_cursor(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Iterator[Any]:
        # The raw cursor's rows are in stored form: a caller of ``.cursor`` reads them so.
        with self._driver.select_cursor(conn, query_name, sql, _stored(parameters)) as cursor:
            yield cursor

    def insert_update_delete(self, conn: Any, query_name: str, sql: str, parameters: Any) -> int:
        return int(self._driver.insert_update_delete(conn, query_name, sql, _stored(parameters)))

    def insert_update_delete_many(
        self, conn: Any, query_name: str, sql: str, parameters: Any
    ) -> int:
        stored = [_stored(dict(row) if isinstance(row, Mapping) else row) for row in parameters]
        return int(self._driver.insert_update_delete_many(conn, query_name, sql, stored))

    def insert_returning(self, conn: Any, query_name: str, sql: str, parameters: Any) -> Any:
        result = self._driver.insert_returning(conn, query_name, sql, _stored(parameters))
        if isinstance(result, tuple):
            return tuple(unescape_row(value) for value in result)
        return unescape_row(result)

    def send(
        self, conn: Any, sql: str, parameters: dict[str, Any], row_factory: Any = None
    ) -> tuple[dict[str, Any], Any]:
        """Execute ``sql`` with ``parameters`` in stored form; returns them and the cursor.

        In pipeline mode the statement is only queued: its rows and ``rowcount`` are
        there once the pipeline syncs (a fetch, or the pipeline's end). Rows come back
        in stored form: the caller compares them with the stored parameters, where
        unescaping would cost a pass."""
        stored = store_parameters(parameters)
        cursor = conn.cursor(row_factory=row_factory)
        cursor.execute(sql, stored)
        return stored, cursor


def prepare_connection(conn: psycopg.Connection[Any]) -> None:
    """Teach a new connection the stored forms that psycopg itself converts.

    ``jsonb`` values come back unescaped (U+0000), and lists are sent as binary arrays:
    the columnar bulk queries bind each column as one list, and psycopg's text array
    format quotes every element through a regular expression (measured: 10,000 messages
    bound in 0.27 s binary against 0.59 s as text); text and bigint columns take the
    short way of :mod:`~polylogue.storage.backends.postgresql.arrays`.
    """
    set_json_loads(loads_json, conn)
    conn.adapters.register_dumper(list, ColumnDumper)


__all__ = ["FaithfulPsycopgAdapter", "prepare_connection"]
