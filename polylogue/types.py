"""Distinct id types, so that a message id cannot be passed where a conversation id belongs."""

from typing import NewType

ConversationId = NewType("ConversationId", str)
MessageId = NewType("MessageId", str)
AttachmentId = NewType("AttachmentId", str)
ContentHash = NewType("ContentHash", str)
RefId = NewType("RefId", str)

__all__ = ["AttachmentId", "ContentHash", "ConversationId", "MessageId", "RefId"]
