"""A deterministic workload shaped like real chat archives.

Bundles of one conversation and 20 messages (by default), texts of 50–2,000 characters
mixing ASCII prose, CJK, emoji and code, and 0–2 attachments of which some are shared
across conversations. The same seed gives the same bundles, byte for byte.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from polylogue.storage.records import AttachmentRecord, ConversationRecord, MessageRecord
from polylogue.storage.repository import Bundle

_PROSE = (
    "The quick brown fox jumps over the lazy dog while the model explains recursion. "
    "Could you summarise the paper's argument in three points and cite the sections? "
)
_CJK = "自然言語処理は面白いです。我们今天讨论数据库的事务隔离级别。한국어 문장도 있습니다. "
_EMOJI = "😀🎉🚀👩‍💻🧪✨🔥💡📚🤖 "
_CODE = (
    "def upsert(conn, rows):\n    with conn:\n        conn.executemany(SQL, rows)\n"
    'SELECT count(*) FROM messages WHERE conversation_id = ?;\n{"key": [1, 2, 3]}\n'
)
PROVIDERS = ("chatgpt", "claude", "gemini", "codex")


def _pool(seed: int, size: int = 1 << 20) -> str:
    rng = random.Random(seed)
    parts = [_PROSE, _CJK, _EMOJI, _CODE]
    weights = [6, 2, 1, 2]
    chunks: list[str] = []
    total = 0
    while total < size:
        chunk = rng.choices(parts, weights)[0]
        chunks.append(chunk)
        total += len(chunk)
    return "".join(chunks)


class Workload:
    """``bundles()`` yields the same bundles every time for the same arguments."""

    def __init__(self, messages: int, *, per_conversation: int = 20, seed: int = 20261126) -> None:
        if messages < per_conversation:
            raise ValueError("need at least one conversation's worth of messages")
        self.per_conversation = per_conversation
        self.conversations = messages // per_conversation
        self.messages = self.conversations * per_conversation
        self.seed = seed
        self._pool = _pool(seed)

    def conversation_id(self, index: int) -> str:
        return f"conv-{index:08d}"

    def bundles(self) -> Iterator[Bundle]:
        rng = random.Random(self.seed)
        pool = self._pool
        limit = len(pool) - 2_000
        shared = [f"shared-{i:05d}" for i in range(max(1, self.conversations // 50))]
        for c in range(self.conversations):
            cid = self.conversation_id(c)
            provider = PROVIDERS[c % len(PROVIDERS)]
            day = 1 + c % 28
            month = 1 + (c // 28) % 12
            stamp = f"2024-{month:02d}-{day:02d}T"
            messages = []
            for m in range(self.per_conversation):
                length = rng.randint(50, 2_000)
                start = rng.randrange(limit)
                text = pool[start : start + length]
                mid = f"{cid}-msg-{m:03d}"
                messages.append(
                    MessageRecord(
                        message_id=mid,
                        conversation_id=cid,
                        provider_message_id=f"p-{m}",
                        role="user" if m % 2 == 0 else "assistant",
                        text=text,
                        timestamp=f"{stamp}{m // 60:02d}:{m % 60:02d}:00Z",
                        content_hash=hashlib.blake2b(text.encode(), digest_size=16).hexdigest(),
                        provider_meta={"model": "gpt-4o"} if m % 2 else None,
                    )
                )
            attachments = []
            for a in range(rng.choice((0, 0, 1, 2))):
                aid = rng.choice(shared) if a == 0 and rng.random() < 0.5 else f"{cid}-att-{a}"
                attachments.append(
                    AttachmentRecord(
                        attachment_id=aid,
                        conversation_id=cid,
                        message_id=messages[a].message_id,
                        mime_type="image/png",
                        size_bytes=rng.randint(1_000, 5_000_000),
                        path=f"/files/{aid}.png",
                    )
                )
            conversation = ConversationRecord(
                conversation_id=cid,
                provider_name=provider,
                provider_conversation_id=f"p-{c}",
                title=pool[rng.randrange(limit) :][:40],
                created_at=f"{stamp}00:00:00Z",
                updated_at=f"{stamp}{self.per_conversation // 60:02d}:00:00Z",
                content_hash=hashlib.blake2b(cid.encode(), digest_size=16).hexdigest(),
                provider_meta={"source": f"export-{c % 3}"},
            )
            yield conversation, messages, attachments
