"""What a write call means when it lists an id twice or claims another conversation's message.

The rules, the same on every backend:

- **Repeated ids: the last occurrence wins.** A batch that lists a message (or a
  conversation) id more than once is written as if its rows had been saved one after the
  other: the id keeps the values of its last occurrence, and counts are over distinct ids
  (1,200 messages with 600 ids report at most 600 changed). The binding de-duplicates once,
  here, so that every dialect's statements see each id once.
- **A message id belongs to one conversation for good.** Saving it under another
  conversation than the one it is stored under, or listing it under two conversations in
  one batch, is a :class:`~polylogue.errors.MessageOwnershipError`, and nothing of that
  write is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from polylogue.errors import MessageOwnershipError

Params = dict[str, Any]


def unique_messages(params: list[Params], where: Callable[[], str]) -> list[Params]:
    """Message parameters with each id once (the last occurrence wins; rows keep the
    position of their id's first occurrence).

    Raises :class:`MessageOwnershipError` (``where()`` says where) before anything is
    written when one id is listed under two conversations: which of them should own it
    is not the binding's to guess. A batch without repeats (the usual case) is returned
    as is after one set of its ids.
    """
    if len({row["message_id"] for row in params}) == len(params):
        return params
    first_owner: dict[str, str] = {}
    collisions: list[tuple[str, str, str]] = []
    for row in params:
        message_id, conversation_id = row["message_id"], row["conversation_id"]
        owner = first_owner.setdefault(message_id, conversation_id)
        if owner != conversation_id:
            collisions.append((message_id, owner, conversation_id))
    if collisions:
        raise MessageOwnershipError(collisions, where=where(), listed_together=True)
    return list({row["message_id"]: row for row in params}.values())


def ownership_error(found: Iterable[Mapping[str, Any]], where: str) -> MessageOwnershipError:
    """The error for the ``(message_id, owner, claimant)`` rows a check found."""
    return MessageOwnershipError(
        [(row["message_id"], row["owner"], row["claimant"]) for row in found], where=where
    )


def split_touched(
    touched: Iterable[Mapping[str, Any]], params: Sequence[Params]
) -> tuple[int, list[Params]]:
    """From the ``(message_id, conversation_id)`` rows an upsert returned for the
    messages it inserted or touched: (how many it inserted or changed, the messages it
    found under another conversation, as ``message_id, owner, claimant``)."""
    claimant = {row["message_id"]: row["conversation_id"] for row in params}
    changed = 0
    foreign: list[Params] = []
    for row in touched:
        message_id, stored_under = row["message_id"], row["conversation_id"]
        if stored_under == claimant[message_id]:
            changed += 1
        else:
            foreign.append(
                {"message_id": message_id, "owner": stored_under, "claimant": claimant[message_id]}
            )
    return changed, foreign


def columns(params: Sequence[Params], *keys: str) -> dict[str, list[Any]]:
    """The named columns of parameter rows, as lists (for set-based queries)."""
    return {key: [row[key] for row in params] for key in keys}


__all__ = ["columns", "ownership_error", "split_touched", "unique_messages"]
