"""Records to query parameters and rows back to records, the same for every dialect.

JSON columns travel as text (``json.dumps`` without ASCII escaping, so the database sees
the characters themselves); a driver that decodes JSON itself (psycopg's ``jsonb``) hands
back a dict, which is taken as is. Rows read back were validated on the way in, so they
are rebuilt with ``model_construct`` (no second validation on the read path).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)

Params = dict[str, Any]
Row = Mapping[str, Any]
_R = TypeVar("_R", bound=BaseModel)


def _trusted(cls: type[_R], values: dict[str, Any]) -> _R:
    """Build a record from values read back from the database, without validating again.

    What ``model_construct`` does for a model whose every field is given, at a quarter of
    its cost (it matters on the read path: 20 messages per ``get_messages``).
    """
    record = cls.__new__(cls)
    object.__setattr__(record, "__dict__", values)
    object.__setattr__(record, "__pydantic_fields_set__", set(values))
    object.__setattr__(record, "__pydantic_extra__", None)
    object.__setattr__(record, "__pydantic_private__", None)
    return record


# One encoder for every call: json.dumps() with options builds a new encoder each time,
# which costs more than encoding a small provider_meta dict. Keys are sorted so that equal
# values are equal texts: the upserts compare stored JSON as text on SQLite and DuckDB, and
# a record read back from PostgreSQL (whose jsonb orders keys its own way) and saved again
# elsewhere must count as unchanged.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)
_c_make_encoder: Callable[..., Callable[[Any, int], Sequence[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
_thread = threading.local()


def _encode(value: Any) -> str:
    """``_ENCODER.encode(value)``: the same text and errors, without building the C
    encoder again for every value (``encode`` does: 0.95 us per provider_meta dict,
    against 0.36 us for the encoding alone, measured).

    One encoder per thread, as ``markers`` (the containers being encoded, to refuse a
    value that contains itself) must not be seen by another thread encoding the same
    value; after an error it is dropped, since the C encoder leaves it holding ids then.
    """
    encoder = getattr(_thread, "encoder", None)
    if encoder is None:
        if _c_make_encoder is None:
            return _ENCODER.encode(value)
        encoder = _thread.encoder = _c_make_encoder(
            {},
            _ENCODER.default,
            json.encoder.encode_basestring,
            None,
            _ENCODER.key_separator,
            _ENCODER.item_separator,
            _ENCODER.sort_keys,
            _ENCODER.skipkeys,
            _ENCODER.allow_nan,
        )
    try:
        return "".join(encoder(value, 0))
    except BaseException:
        _thread.encoder = None
        raise


def dump_json(value: Mapping[str, Any] | Sequence[Any] | None) -> str | None:
    """JSON text for a JSON column (None stays NULL)."""
    if value is None:
        return None
    return _encode(value)


def load_json(value: Any) -> Any:
    """The Python value of a JSON column, whether the driver returned text or data."""
    if value is None or not isinstance(value, str | bytes | bytearray):
        return value
    return json.loads(value)


def conversation_params(record: ConversationRecord) -> Params:
    return {
        "conversation_id": record.conversation_id,
        "provider_name": record.provider_name,
        "provider_conversation_id": record.provider_conversation_id,
        "title": record.title,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "content_hash": record.content_hash,
        "provider_meta": dump_json(record.provider_meta),
        "version": record.version,
    }


def message_params(record: MessageRecord) -> Params:
    return {
        "message_id": record.message_id,
        "conversation_id": record.conversation_id,
        "provider_message_id": record.provider_message_id,
        "role": record.role,
        "text": record.text,
        "timestamp": record.timestamp,
        "content_hash": record.content_hash,
        "provider_meta": dump_json(record.provider_meta),
        "version": record.version,
    }


def attachment_params(record: AttachmentRecord) -> Params:
    """Parameters of the shared attachment row."""
    return {
        "attachment_id": record.attachment_id,
        "mime_type": record.mime_type,
        "size_bytes": record.size_bytes,
        "path": record.path,
        "provider_meta": dump_json(record.provider_meta),
    }


def ref_params(record: AttachmentRecord) -> Params:
    """Parameters of the reference row (conversation, message) of an attachment record."""
    return {
        "ref_id": record.ref_id,
        "attachment_id": record.attachment_id,
        "conversation_id": record.conversation_id,
        "message_id": record.message_id,
        "provider_meta": dump_json(record.provider_meta),
    }


def run_params(record: RunRecord) -> Params:
    return {
        "run_id": record.run_id,
        "timestamp": record.timestamp,
        "plan_snapshot": dump_json(record.plan_snapshot),
        "counts_json": dump_json(record.counts),
        "drift_json": dump_json(record.drift),
        "is_indexed": None if record.indexed is None else int(record.indexed),
        "duration_ms": record.duration_ms,
    }


def conversation_from_row(row: Row) -> ConversationRecord:
    return _trusted(
        ConversationRecord,
        dict(
            conversation_id=row["conversation_id"],
            provider_name=row["provider_name"],
            provider_conversation_id=row["provider_conversation_id"],
            title=row["title"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            content_hash=row["content_hash"],
            provider_meta=load_json(row["provider_meta"]),
            version=row["version"],
        ),
    )


def message_from_row(row: Row) -> MessageRecord:
    return _trusted(
        MessageRecord,
        dict(
            message_id=row["message_id"],
            conversation_id=row["conversation_id"],
            provider_message_id=row["provider_message_id"],
            role=row["role"],
            text=row["text"],
            timestamp=row["timestamp"],
            content_hash=row["content_hash"],
            provider_meta=load_json(row["provider_meta"]),
            version=row["version"],
        ),
    )


def attachment_from_row(row: Row) -> AttachmentRecord:
    return _trusted(
        AttachmentRecord,
        dict(
            attachment_id=row["attachment_id"],
            conversation_id=row["conversation_id"],
            message_id=row["message_id"],
            mime_type=row["mime_type"],
            size_bytes=row["size_bytes"],
            path=row["path"],
            provider_meta=load_json(row["provider_meta"]),
        ),
    )


def run_from_row(row: Row) -> RunRecord:
    indexed = row["indexed"]
    return _trusted(
        RunRecord,
        dict(
            run_id=row["run_id"],
            timestamp=row["timestamp"],
            plan_snapshot=load_json(row["plan_snapshot"]),
            counts=load_json(row["counts_json"]),
            drift=load_json(row["drift_json"]),
            indexed=None if indexed is None else bool(indexed),
            duration_ms=row["duration_ms"],
        ),
    )
