"""The records the archive stores, validated before anything is written.

A record that cannot be stored faithfully on every backend is refused here, with a
``pydantic.ValidationError`` naming the field: blank ids, a malformed provider name, a
size out of range, a lone surrogate (not encodable as UTF-8), or ``provider_meta`` that is
not plain JSON (NaN, non-string keys, objects).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from polylogue.types import AttachmentId, ContentHash, ConversationId, MessageId, RefId

MAX_ATTACHMENT_SIZE = 2**40
"""Largest ``size_bytes`` an attachment may declare (1 TiB)."""

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
        raise ValueError(
            f"must start with a letter and hold only letters, digits, '-' and '_' (got {value!r})"
        )
    return value


def _plain_json(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data (tuples become lists) or raise naming the path."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} holds a lone surrogate") from None
        return value
    if isinstance(value, list | tuple):
        return [_plain_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}")
            _plain_json(key, f"{where} key {key!r}")
            out[key] = _plain_json(item, f"{where}[{key!r}]")
        return out
    raise ValueError(f"{where} holds a {type(value).__name__}, which is not JSON")


def _json_object(value: JSONObject | None) -> JSONObject | None:
    if value is None:
        return None
    result: JSONObject = _plain_json(value, "value")
    return result


_NOT_BLANK = AfterValidator(_not_blank)
_UTF8 = AfterValidator(_utf8_encodable)
Text = Annotated[str, _UTF8]
Id = Annotated[str, _NOT_BLANK, _UTF8]
ConversationIdField = Annotated[ConversationId, _NOT_BLANK, _UTF8]
MessageIdField = Annotated[MessageId, _NOT_BLANK, _UTF8]
AttachmentIdField = Annotated[AttachmentId, _NOT_BLANK, _UTF8]
ContentHashField = Annotated[ContentHash, _NOT_BLANK, _UTF8]
Meta = Annotated[JSONObject | None, AfterValidator(_json_object)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConversationRecord(_Record):
    """One conversation: its identity, titles and times, and the provider's own metadata."""

    conversation_id: ConversationIdField
    provider_name: Annotated[str, AfterValidator(_provider_name)]
    provider_conversation_id: Id
    title: Text | None = None
    created_at: Text | None = None
    updated_at: Text | None = None
    content_hash: ContentHashField
    provider_meta: Meta = None
    version: int = 1

    @field_validator("provider_meta")
    @classmethod
    def _indexable_source(cls, value: JSONObject | None) -> JSONObject | None:
        source = value.get("source") if value else None
        if isinstance(source, str) and "\x00" in source:
            # source is indexed (source_name) through JSON functions that stop at U+0000
            raise ValueError("value['source'] must not contain U+0000")
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
    version: int = 1


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
    duration_ms: int | None = None

    @field_validator("duration_ms")
    @classmethod
    def _non_negative(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        return value


def make_ref_id(attachment_id: str, conversation_id: str, message_id: str | None) -> RefId:
    """``"ref-" + sha256_hex(f"{attachment_id}:{conversation_id}:{message_id or ''}")[:16]``.

    Migration 0002 computes the same id in SQL (``sha256_hex``) for rows it converts.
    """
    key = f"{attachment_id}:{conversation_id}:{message_id or ''}"
    return RefId("ref-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16])


__all__ = [
    "MAX_ATTACHMENT_SIZE",
    "AttachmentRecord",
    "ConversationRecord",
    "MessageRecord",
    "RunRecord",
    "make_ref_id",
]
