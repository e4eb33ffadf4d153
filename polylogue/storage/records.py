"""The records the archive stores, validated before anything is written.

Validation accepts exactly what every backend (SQLite, PostgreSQL, DuckDB) stores and
gives back unchanged. Anything else is refused here, with a ``pydantic.ValidationError``
naming the field: blank ids, a malformed provider name, a lone surrogate (not encodable
as UTF-8), a number outside its column's range on some backend (:data:`MIN_VERSION`..
:data:`MAX_VERSION`, ``size_bytes`` up to :data:`MAX_ATTACHMENT_SIZE`, ``duration_ms`` up
to :data:`MAX_DURATION_MS`), an indexed text longer than :data:`MAX_KEY_BYTES`, or
``provider_meta`` that is not plain JSON every backend returns as saved: NaN and
infinities, ``-0.0``, integers of more than :data:`MAX_JSON_INT_DIGITS` digits, non-string
keys, objects, nesting deeper than :data:`MAX_JSON_DEPTH` or a structure that contains
itself.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from polylogue.types import AttachmentId, ContentHash, ConversationId, MessageId, RefId

MAX_ATTACHMENT_SIZE = 2**40
"""Largest ``size_bytes`` an attachment may declare (1 TiB)."""

MIN_VERSION = -(2**31)
MAX_VERSION = 2**31 - 1
"""The range of a record's ``version``: DuckDB's ``INTEGER`` column (32 bits) is the
narrowest of the three schemas (SQLite's integers and PostgreSQL's ``bigint`` hold 64)."""

MAX_DURATION_MS = 2**63 - 1
"""Largest ``RunRecord.duration_ms``: the 64-bit integer columns of every backend."""

MAX_KEY_BYTES = 512
"""Longest UTF-8 encoding (in bytes) of a text value that an index holds: every id,
``provider_name`` and ``provider_conversation_id``, a conversation's ``updated_at``, a
run's ``timestamp`` and ``provider_meta["source"]``. PostgreSQL's btree refuses an index
row over about 2,700 bytes, its U+0000 escaping can double a string, and two such values
share an index row in ``(provider_name, provider_conversation_id)`` and ``(updated_at,
conversation_id)``: 2 x (2 x 512 + 3) bytes fit with room to spare."""

MAX_JSON_DEPTH = 100
"""Deepest nesting of ``provider_meta`` (and the run JSON fields): the record itself is
level 1. Every backend stores deeper JSON, but Python's JSON decoder recurses once per
level and fails past ~1,000 levels minus the caller's own stack when it reads the value
back; 100 levels leave a deep caller room and hold any export's metadata."""

MAX_JSON_INT_DIGITS = 4300
"""Most digits of an integer inside JSON: Python's own limit for converting integers to
text and back (``sys.get_int_max_str_digits()``), which writing and reading JSON apply.
Within it every backend keeps integers exactly, beyond 2**64 too."""

_PROVIDER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

JSONObject = dict[str, Any]


def _utf8_encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"holds a lone surrogate at position {exc.start}") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace")
    return value


def _provider_name(value: str) -> str:
    if not _PROVIDER_NAME.fullmatch(value):
        # Capitalised unlike the other messages: existing callers match "Must start with a letter".
        raise ValueError(
            f"Must start with a letter and hold only letters, digits, '-' and '_' (got {value!r})"
        )
    return value


_JSON_INT_LIMIT = 10**MAX_JSON_INT_DIGITS


def _plain_json(value: Any, where: str, depth: int = 1, path: tuple[int, ...] = ()) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists) or raise naming the path.

    ``depth`` is the nesting level of ``value``; ``path`` the ids of the containers it
    sits in, to tell a structure that contains itself from one that is merely deep.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_JSON_INT_LIMIT < value < _JSON_INT_LIMIT:
            raise ValueError(
                f"{where} is an integer of more than {MAX_JSON_INT_DIGITS} digits,"
                " which JSON here cannot write or read back"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot hold")
        if value == 0.0 and math.copysign(1.0, value) < 0:
            raise ValueError(f"{where} is -0.0, which PostgreSQL's jsonb gives back as 0.0")
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} holds a lone surrogate") from None
        return value
    if not isinstance(value, list | tuple | dict):
        raise ValueError(f"{where} holds a {type(value).__name__}, which is not JSON")
    if id(value) in path:
        raise ValueError(f"{_short(where)} contains itself, which JSON cannot hold")
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{_short(where)} nests deeper than {MAX_JSON_DEPTH} levels")
    inside = (*path, id(value))
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}")
            _plain_json(key, f"{where} key {key!r}")
            out[key] = _plain_json(item, f"{where}[{key!r}]", depth + 1, inside)
        return out
    items: list[Any] = []
    for i, item in enumerate(value):
        items.append(_plain_json(item, f"{where}[{i}]", depth + 1, inside))
    return items


def _short(where: str) -> str:
    """A JSON path for a message: its start and end when it is long."""
    return where if len(where) <= 80 else f"{where[:40]}...{where[-30:]}"


def _json_object(value: JSONObject | None) -> JSONObject | None:
    if value is None:
        return None
    result: JSONObject = _plain_json(value, "value")
    return result


def _indexable(value: str) -> str:
    if len(value) * 4 <= MAX_KEY_BYTES:
        return value  # short enough whatever its characters (UTF-8: at most 4 bytes each)
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise ValueError(
            f"is {size} bytes long (UTF-8); an indexed text may hold at most {MAX_KEY_BYTES}"
        )
    return value


_NOT_BLANK = AfterValidator(_not_blank)
_UTF8 = AfterValidator(_utf8_encodable)
_KEY = AfterValidator(_indexable)
Text = Annotated[str, _UTF8]
IndexedText = Annotated[str, _UTF8, _KEY]
Id = Annotated[str, _NOT_BLANK, _UTF8, _KEY]
ConversationIdField = Annotated[ConversationId, _NOT_BLANK, _UTF8, _KEY]
MessageIdField = Annotated[MessageId, _NOT_BLANK, _UTF8, _KEY]
AttachmentIdField = Annotated[AttachmentId, _NOT_BLANK, _UTF8, _KEY]
ContentHashField = Annotated[ContentHash, _NOT_BLANK, _UTF8]
Meta = Annotated[JSONObject | None, AfterValidator(_json_object)]
Version = Annotated[int, Field(ge=MIN_VERSION, le=MAX_VERSION)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConversationRecord(_Record):
    """One conversation: its identity, titles and times, and the provider's own metadata."""

    conversation_id: ConversationIdField
    provider_name: Annotated[str, AfterValidator(_provider_name), _KEY]
    provider_conversation_id: Id
    title: Text | None = None
    created_at: Text | None = None
    updated_at: IndexedText | None = None
    content_hash: ContentHashField
    provider_meta: Meta = None
    version: Version = 1

    @field_validator("provider_meta")
    @classmethod
    def _indexable_source(cls, value: JSONObject | None) -> JSONObject | None:
        # source is indexed (source_name), as the text of its JSON value
        source = value.get("source") if value else None
        if source is None or isinstance(source, bool):
            return value
        if isinstance(source, str):
            if "\x00" in source:
                # ... through JSON functions that stop at U+0000
                raise ValueError("value['source'] must not contain U+0000")
            text = source
        elif isinstance(source, int | float):
            text = repr(source)
        else:
            raise ValueError(
                "value['source'] must be a string, a number, a boolean or null (it is"
                f" indexed as the conversation's source name), not a {type(source).__name__}"
            )
        try:
            _indexable(text)
        except ValueError as exc:
            raise ValueError(f"value['source'] {exc}") from None
        return value


class MessageRecord(_Record):
    """One message of a conversation."""

    message_id: MessageIdField
    conversation_id: ConversationIdField
    provider_message_id: Text | None = None
    role: Text | None = None
    text: Text | None = None
    timestamp: Text | None = None
    content_hash: ContentHashField
    provider_meta: Meta = None
    version: Version = 1


class AttachmentRecord(_Record):
    """One reference to an attachment.

    ``conversation_id`` and ``message_id`` belong to the reference; the other fields to the
    attachment row that every reference to the same ``attachment_id`` shares.
    """

    attachment_id: AttachmentIdField
    conversation_id: ConversationIdField
    message_id: MessageIdField | None = None
    mime_type: Text | None = None
    size_bytes: int | None = Field(default=None, ge=0, le=MAX_ATTACHMENT_SIZE)
    path: Text | None = None
    provider_meta: Meta = None

    @property
    def ref_id(self) -> RefId:
        """The id of the reference row: stable for (attachment, conversation, message)."""
        return make_ref_id(self.attachment_id, self.conversation_id, self.message_id)


class RunRecord(_Record):
    """One import run: when, what was planned, what was counted, how long it took."""

    run_id: Id
    timestamp: Id
    plan_snapshot: Meta = None
    counts: Meta = None
    drift: Meta = None
    indexed: bool | None = None
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_DURATION_MS)


REF_ID_CACHE_SIZE = 4096
"""How many ref ids :func:`make_ref_id` remembers (a few batches' attachments)."""


@functools.lru_cache(maxsize=REF_ID_CACHE_SIZE)
def make_ref_id(attachment_id: str, conversation_id: str, message_id: str | None) -> RefId:
    """``"ref-" + sha256_hex(f"{attachment_id}:{conversation_id}:{message_id or ''}")[:16]``.

    Migration 0002 computes the same id in SQL (``sha256_hex``) for rows it converts.
    Cached: saving a bundle reads a record's :attr:`AttachmentRecord.ref_id` about five
    times (checks, prune plan, parameters), and the hash costs 0.8 µs against 0.1 µs
    for a cache hit.
    """
    key = f"{attachment_id}:{conversation_id}:{message_id or ''}"
    return RefId("ref-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16])


__all__ = [
    "MAX_ATTACHMENT_SIZE",
    "MAX_DURATION_MS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT_DIGITS",
    "MAX_KEY_BYTES",
    "MAX_VERSION",
    "MIN_VERSION",
    "AttachmentRecord",
    "ConversationRecord",
    "MessageRecord",
    "RunRecord",
    "make_ref_id",
]
