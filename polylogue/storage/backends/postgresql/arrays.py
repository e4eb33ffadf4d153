"""Binary array dumpers for the columns polylogue binds: text and bigint lists, lean.

Every columnar write binds each column as one list (a bundle binds about 22), and
psycopg's generic :class:`~psycopg.types.array.ListBinaryDumper` works out each list's
element type, dimensions and integer width in Python before it dumps it. Polylogue's
columns hold strings or integers (and ``None``), so :class:`ColumnDumper` classifies a
list in one pass and dumps it as ``text[]`` or ``int8[]`` directly; any other list goes to
psycopg's dumper as before. The ``text[]`` bytes are the same as psycopg's; integers are
always sent as ``int8`` (every integer column polylogue binds is cast to ``BIGINT[]``, and
psycopg's narrowest-width choice was converted back server-side). Measured (bench
workload, one bundle's message and conversation columns): about half of psycopg's time
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import struct
from typing import Any

from psycopg.adapt import PyFormat
from psycopg.postgres import types as builtins
from psycopg.types.array import BaseListDumper, ListBinaryDumper

_NoneType = type(None)
_HEADER = struct.Struct(">iiIii").pack  # dimensions, has nulls, element oid, length, lower bound
_LENGTH = struct.Struct(">i").pack
_INT8 = struct.Struct(">iq").pack  # length 8, value
_NULL = _LENGTH(-1)
_TEXT_OID = builtins["text"].oid
_INT8_OID = builtins["int8"].oid
_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1


class TextListDumper(ListBinaryDumper):
    """A list of ``str`` (and ``None``) as a one-dimensional binary ``text[]``."""

    oid = builtins["text"].array_oid

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        connection = self.connection
        self._encoding = connection.info.encoding if connection is not None else "utf-8"

    def dump(self, obj: list[str | None]) -> bytes:
        encoding = self._encoding
        elements = [_NULL if v is None else _framed(v.encode(encoding)) for v in obj]
        return _array(_TEXT_OID, elements, None in obj)


class Int8ListDumper(ListBinaryDumper):
    """A list of ``int`` (and ``None``) within int8's range as a binary ``int8[]``."""

    oid = builtins["int8"].array_oid

    def dump(self, obj: list[int | None]) -> bytes:
        elements = [_NULL if v is None else _INT8(8, v) for v in obj]
        return _array(_INT8_OID, elements, None in obj)


def _framed(data: bytes) -> bytes:
    """An array element: its length, then its bytes."""
    return _LENGTH(len(data)) + data


def _array(element_oid: int, elements: list[bytes], nulls: bool) -> bytes:
    """A one-dimensional binary array (lower bound 1) of elements already framed."""
    return _HEADER(1, nulls, element_oid, len(elements), 1) + b"".join(elements)


_TEXT_KEY = (list, TextListDumper)
_INT8_KEY = (list, Int8ListDumper)


class ColumnDumper(ListBinaryDumper):
    """psycopg's binary list dumper, with a short way for text and bigint columns."""

    def get_key(self, obj: list[Any], format: PyFormat) -> Any:
        kinds = set(map(type, obj))
        kinds.discard(_NoneType)
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind is str:
                return _TEXT_KEY
            if kind is int and _fits_int8(obj):
                return _INT8_KEY
        return super().get_key(obj, format)

    def upgrade(self, obj: list[Any], format: PyFormat) -> BaseListDumper:
        key = self.get_key(obj, format)
        if key is _TEXT_KEY:
            return TextListDumper(list, self._tx)
        if key is _INT8_KEY:
            return Int8ListDumper(list, self._tx)
        return super().upgrade(obj, format)


def _fits_int8(values: list[int | None]) -> bool:
    present = [value for value in values if value is not None]
    return min(present) >= _INT8_MIN and max(present) <= _INT8_MAX


__all__ = ["ColumnDumper", "Int8ListDumper", "TextListDumper"]
