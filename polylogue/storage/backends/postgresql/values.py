"""What PostgreSQL would not give back as saved, and how the backend keeps rule 4 anyway.

**U+0000.** PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000 (NUL), and chat exports
contain it. Such strings are stored escaped, and only those:

- a string that contains U+0000, or that begins with the marker ``␀`` (U+2400 SYMBOL FOR
  NULL), is stored as ``␀`` followed by the string with every ``\\`` doubled and every
  U+0000 written ``\\0``: ``"nul\\x00byte"`` is stored as ``␀nul\\0byte``;
- every other string is stored as it is.

Decoding is unambiguous: a stored string that begins with ``␀`` was escaped, because any
original string beginning with ``␀`` is escaped too. The rule applies to every ``text``
value and to every string inside JSON columns, keys included. Equality still works
(``WHERE conversation_id = :id`` compares escaped forms); ordering by an escaped value
follows its stored form (ids or timestamps holding U+0000 sort as if they began with ``␀``).

**Large floats in JSON.** ``jsonb`` keeps numbers as ``numeric`` and prints them without an
exponent, so ``1e+23`` (how Python writes that float) would come back as the integer
``100000000000000000000000``: another type, and here another value. Floats written with a
positive exponent are therefore sent in positional form with a ``.0`` (the same decimal
value, so the same float when read back).

:class:`~polylogue.storage.backends.postgresql.adapter.FaithfulPsycopgAdapter`, the aiosql
adapter every PostgreSQL query runs through, applies both with these functions: parameters
are converted on the way in (:func:`store_parameters`), ``text`` columns of result rows
unescaped on the way out (:func:`unescape_row`); :func:`loads_json` unescapes ``jsonb``
values as psycopg parses them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from polylogue.storage.rows import dump_json

MARKER = "\u2400"
"""First character of every escaped string: ``␀`` SYMBOL FOR NULL."""

JSON_PARAMETERS = frozenset(
    {"provider_meta", "plan_snapshot", "counts_json", "drift_json", "keep_ref_ids"}
)
"""Parameters that carry JSON text (cast to ``jsonb`` by the queries)."""

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_JSON_NUL = "\\u0000"
_EXPONENT = "e+"
# A number may only start where no digit precedes it: without that, a long integer
# (thousands of digits) in a text that also holds an exponent was rescanned from every
# digit, quadratic (0.5 s for 4,300 digits).
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![0-9.\-])(-?\d+(?:\.\d+)?e\+\d+)')
_SHORT = 64


def escape(value: str) -> str:
    """The stored form of ``value`` (``value`` itself unless it holds U+0000 or the marker)."""
    if "\x00" not in value and not value.startswith(MARKER):
        return value
    return MARKER + value.replace("\\", "\\\\").replace("\x00", "\\0")


def unescape(value: str) -> str:
    """The original of a stored string (the inverse of :func:`escape`)."""
    if not value.startswith(MARKER):
        return value
    return _ESCAPE.sub(_unescape_pair, value[1:])


def _unescape_pair(match: re.Match[str]) -> str:
    char = match.group(1)
    return "\x00" if char == "0" else char


def _map_strings(value: Any, convert: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, list):
        return [_map_strings(item, convert) for item in value]
    if isinstance(value, dict):
        return {convert(key): _map_strings(item, convert) for key, item in value.items()}
    return value


def _positional(match: re.Match[str]) -> str:
    number = match.group(1)
    if number is None:  # a string: left alone
        return match.group(0)
    return f"{Decimal(number):f}.0"


def store_json_text(text: str) -> str:
    """JSON text as ``jsonb`` must receive it: strings escaped, large floats positional."""
    if _JSON_NUL in text or MARKER in text:
        text = dump_json(_map_strings(json.loads(text), escape)) or text
    if _EXPONENT in text:
        text = _JSON_TOKEN.sub(_positional, text)
    return text


def loads_json(data: str | bytes) -> Any:
    """psycopg's ``jsonb`` loader: ``json.loads`` plus unescaping where needed."""
    marked = MARKER in data if isinstance(data, str) else MARKER.encode() in data
    value = json.loads(data)
    return _map_strings(value, unescape) if marked else value


def store_parameter(name: str, value: Any) -> Any:
    """The stored form of one bound value (a column of values for columnar queries)."""
    if isinstance(value, str):
        return store_json_text(value) if name in JSON_PARAMETERS else escape(value)
    if isinstance(value, list):
        return _store_column(name, value)
    return value


def _store_column(name: str, values: list[Any]) -> list[Any]:
    """A column of values in stored form, unchanged (the same list) when nothing needs it."""
    strings = [value for value in values if value.__class__ is str]
    if not strings:
        return values
    if name in JSON_PARAMETERS:
        # JSON values are short: one join, three scans in C.
        joined = "".join(strings)
        clean = _JSON_NUL not in joined and MARKER not in joined and _EXPONENT not in joined
    elif sum(map(len, strings[:8])) <= 8 * _SHORT:
        # Short strings (ids, hashes, timestamps): likewise. A marker anywhere sends the
        # column to the careful path, which changes only what needs it.
        joined = "".join(strings)
        clean = "\x00" not in joined and MARKER not in joined
    else:
        # Long texts: joining would copy (and maybe widen) megabytes; test each in C.
        clean = not any("\x00" in text or text.startswith(MARKER) for text in strings)
    return values if clean else [store_parameter(name, value) for value in values]


def store_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Named parameters in stored form."""
    return {name: store_parameter(name, value) for name, value in params.items()}


def unescape_row(row: Any) -> Any:
    """A result row (a dict, from psycopg's ``dict_row``) with text columns unescaped."""
    if isinstance(row, dict):
        for key, value in row.items():
            if isinstance(value, str) and value.startswith(MARKER):
                row[key] = unescape(value)
        return row
    if isinstance(row, str):
        return unescape(row)
    return row


__all__ = [
    "MARKER",
    "escape",
    "loads_json",
    "store_json_text",
    "store_parameter",
    "store_parameters",
    "unescape",
    "unescape_row",
]
