"""Small builders of valid records for the suites."""

from __future__ import annotations

from typing import Any

from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
)


def conversation(cid: str = "c1", **fields: Any) -> ConversationRecord:
    values: dict[str, Any] = {
        "conversation_id": cid,
        "provider_name": "chatgpt",
        "provider_conversation_id": f"p-{cid}",
        "content_hash": f"hash-{cid}",
    }
    values.update(fields)
    return ConversationRecord(**values)


def message(mid: str, cid: str = "c1", **fields: Any) -> MessageRecord:
    values: dict[str, Any] = {
        "message_id": mid,
        "conversation_id": cid,
        "content_hash": f"hash-{mid}",
        "text": f"text of {mid}",
    }
    values.update(fields)
    return MessageRecord(**values)


def attachment(
    aid: str, cid: str = "c1", mid: str | None = None, **fields: Any
) -> AttachmentRecord:
    values: dict[str, Any] = {"attachment_id": aid, "conversation_id": cid, "message_id": mid}
    values.update(fields)
    return AttachmentRecord(**values)


def bundle(
    cid: str, n_messages: int = 3, attachment_ids: tuple[str, ...] = ()
) -> tuple[ConversationRecord, list[MessageRecord], list[AttachmentRecord]]:
    conv = conversation(cid, updated_at=f"2024-01-01T00:00:{len(cid):02d}")
    messages = [
        message(f"{cid}-m{i}", cid, timestamp=f"2024-01-01T00:{i:02d}:00")
        for i in range(n_messages)
    ]
    attachments = [
        attachment(aid, cid, messages[0].message_id if messages else None) for aid in attachment_ids
    ]
    return conv, messages, attachments
