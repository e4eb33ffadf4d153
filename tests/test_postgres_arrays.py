"""The lean column dumpers (``postgresql/arrays.py``) against psycopg's own and a server.

Text columns must reach the server as the very bytes psycopg's generic binary list dumper
sends; integer columns as ``int8[]`` with the same values; every other list as psycopg
dumps it. Round trips go through a real server.
"""

# ruff: noqa: E402 (the imports below need psycopg, checked first)
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.adapt import PyFormat, Transformer
from psycopg.types.array import ListBinaryDumper

from polylogue.storage.backends.postgresql.adapter import prepare_connection
from polylogue.storage.backends.postgresql.arrays import Int8ListDumper, TextListDumper
from tests.support_postgres import require_server

# PostgreSQL text cannot hold U+0000 (the backend escapes it before binding).
TEXTS = st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"))
INT8 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    with psycopg.connect(require_server(), autocommit=True) as connection:
        prepare_connection(connection)
        yield connection


@pytest.fixture(scope="module")
def generic() -> Iterator[Any]:
    """A connection that binds lists with psycopg's own binary dumper only."""
    with psycopg.connect(require_server(), autocommit=True) as connection:
        connection.adapters.register_dumper(list, ListBinaryDumper)
        yield connection


def dumped(conn: Any, value: list[Any]) -> tuple[bytes, int, type]:
    """The bytes, oid and dumper class a connection binds ``value`` with."""
    transformer = Transformer(conn)
    (data,) = transformer.dump_sequence([value], [PyFormat.BINARY])
    dumper = transformer.get_dumper(value, PyFormat.BINARY)
    return bytes(data or b""), transformer.types[0], type(dumper)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXTS), min_size=1).filter(lambda v: v != [None] * len(v)))
def test_a_text_column_is_sent_as_the_bytes_psycopg_sends(
    conn: Any, generic: Any, values: list[str | None]
) -> None:
    data, oid, dumper = dumped(conn, values)
    assert dumper is TextListDumper
    assert (data, oid) == dumped(generic, values)[:2]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXTS), min_size=1))
def test_a_text_column_comes_back_from_the_server_as_it_was(
    conn: Any, values: list[str | None]
) -> None:
    assert conn.execute("SELECT cast(%s AS TEXT[])", [values]).fetchone()[0] == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), INT8), min_size=1))
def test_an_integer_column_is_sent_as_int8_and_comes_back_as_it_was(
    conn: Any, values: list[int | None]
) -> None:
    _, oid, dumper = dumped(conn, values)
    if any(value is not None for value in values):
        assert dumper is Int8ListDumper
        assert oid == Int8ListDumper.oid
    assert conn.execute("SELECT cast(%s AS BIGINT[])", [values]).fetchone()[0] == values


def test_the_int8_range_ends_where_bigint_ends(conn: Any) -> None:
    extremes = [-(2**63), 2**63 - 1, None, 0]
    assert dumped(conn, extremes)[2] is Int8ListDumper
    assert conn.execute("SELECT cast(%s AS BIGINT[])", [extremes]).fetchone()[0] == extremes


@pytest.mark.parametrize(
    "values",
    [
        [2**63],  # beyond int8: psycopg sends numeric
        [-(2**63) - 1, None],
        [True, False],  # bool is not int here
        [1.5, None],
        [1, "a"],  # mixed: psycopg's error, as before
        [None, None],
        [],
        [["a", "b"], ["c", "d"]],
    ],
)
def test_other_lists_are_dumped_by_psycopg_as_before(
    conn: Any, generic: Any, values: list[Any]
) -> None:
    try:
        expected = dumped(generic, values)
    except psycopg.DataError as exc:
        with pytest.raises(psycopg.DataError, match=str(exc)):
            dumped(conn, values)
        return
    data, oid, dumper = dumped(conn, values)
    assert dumper not in (TextListDumper, Int8ListDumper)
    assert (data, oid) == expected[:2]


def test_text_is_encoded_in_the_connection_encoding(conn: Any) -> None:
    conn.execute("SET client_encoding TO 'LATIN1'")
    try:
        values = ["café", None, "naïve"]
        assert conn.execute("SELECT cast(%s AS TEXT[])", [values]).fetchone()[0] == values
    finally:
        conn.execute("SET client_encoding TO 'UTF8'")
