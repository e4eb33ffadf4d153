"""The archive bundle format: one JSON object per line, each a header, a bundle or a run.

Every command that moves an archive through a file (``export``, ``import``, ``copy``,
``verify``) encodes and decodes lines here, so that the format has exactly one definition.
Encoding is canonical (the same records always give the same bytes), which makes
export -> import -> export byte-identical and files comparable with ``cmp``. Decoding
validates each line completely (JSON, shape, every record, and that the records belong
to their conversation) and reports any problem as one :class:`ArchiveFormatError` naming
the line and the field. The format is documented for users in ``docs/archive-format.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Required

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it, not typing's, before 3.12

from polylogue.storage.records import (
    AttachmentRecord,
    ConversationRecord,
    MessageRecord,
    RunRecord,
)
from polylogue.storage.repository import Bundle, BundleError, check_bundle

FORMAT_NAME: Final = "polylogue-archive"
FORMAT_VERSION: Final = 1

HEADER_KEYS: Final = frozenset({"format", "version"})
BUNDLE_KEYS: Final = frozenset({"conversation", "messages", "attachments"})
RUN_KEYS: Final = frozenset({"run"})

MAX_ERRORS_SHOWN = 3
"""Validation errors of one record named in a message; the rest are counted."""


class ArchiveFormatError(ValueError):
    """A line of an archive file that cannot be read: ``line`` is its number (from 1)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    """The optional first line: which format and version the file is written in."""

    version: int


@dataclass(frozen=True, slots=True)
class BundleItem:
    """One conversation with its messages and attachment references, as read from ``line``."""

    line: int
    conversation: ConversationRecord
    messages: list[MessageRecord]
    attachments: list[AttachmentRecord]

    @property
    def bundle(self) -> Bundle:
        """The records as the repository takes them (``StorageRepository.save_many``)."""
        return (self.conversation, self.messages, self.attachments)


@dataclass(frozen=True, slots=True)
class RunItem:
    """One import run, as read from ``line``."""

    line: int
    run: RunRecord


Item = Header | BundleItem | RunItem

# One validator call per list, not per record: the loop runs inside pydantic-core, and
# the error locations still start with the index ("messages[2].role").
_MESSAGES: Final = TypeAdapter(list[MessageRecord])
_ATTACHMENTS: Final = TypeAdapter(list[AttachmentRecord])


@with_config(ConfigDict(extra="forbid"))
class _BundleLine(TypedDict, total=False):
    conversation: Required[ConversationRecord]
    messages: list[MessageRecord]
    attachments: list[AttachmentRecord]


# The fast path for a valid bundle line: pydantic parses the bytes and validates the
# records in one pass, with no dicts built for json.loads to hand over (10-25% less time
# than json.loads + validate_python; the records' own validators are most of the rest,
# see docs/BENCHMARKS.md). It accepts exactly the lines the checked path below
# accepts, with the same values (duplicate keys: the last wins; NaN and infinities
# reach the records' own checks, which refuse them), and refuses lone surrogate escapes,
# bad UTF-8 and a byte order mark; any line it refuses goes through the checked path,
# which names the problem, so error messages do not depend on it.
_BUNDLE_LINE: Final = TypeAdapter(_BundleLine)

# Built once: json.dumps() with non-default options builds a new encoder on every call.
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


# --- encoding ------------------------------------------------------------------------


def _line(obj: dict[str, Any]) -> bytes:
    return (_ENCODER.encode(obj) + "\n").encode("utf-8")


def encode_header() -> bytes:
    """The header line: ``{"format":"polylogue-archive","version":1}`` and a newline."""
    return _line({"format": FORMAT_NAME, "version": FORMAT_VERSION})


def encode_bundle(
    conversation: ConversationRecord,
    messages: Sequence[MessageRecord],
    attachments: Sequence[AttachmentRecord],
) -> bytes:
    """One bundle line in canonical form (keys sorted, every field written, None as null).

    Messages and attachments keep the caller's order. Raises ``BundleError`` (or
    ``TypeError``) when the records do not belong to ``conversation``: a file is never
    written that :func:`decode_line` would refuse.
    """
    check_bundle(conversation, messages, attachments, where=_where(conversation))
    # Python-mode dumps: validated records hold only str, int, float, bool, None, list
    # and dict (records.py turns everything else away), for which they equal
    # mode="json" dumps, and they are about 1.5x as fast.
    return _line(
        {
            "conversation": conversation.model_dump(),
            "messages": [m.model_dump() for m in messages],
            "attachments": [a.model_dump() for a in attachments],
        }
    )


def encode_run(run: RunRecord) -> bytes:
    """One run line in canonical form."""
    return _line({"run": run.model_dump()})


# --- decoding ------------------------------------------------------------------------


class _NotJSON(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    # json.loads would otherwise turn NaN and Infinity (not JSON) into floats.
    raise _NotJSON(f"{name} is not JSON")


def decode_line(raw: bytes, line_no: int) -> Item | None:
    """Decode and validate one line (with or without its ``\\n``); None for a blank line.

    Raises :class:`ArchiveFormatError` naming ``line_no`` and what is wrong.
    """
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw.strip():
        return None
    try:
        fast = _BUNDLE_LINE.validate_json(raw, strict=True)
    except ValidationError:
        pass  # not a valid bundle line: the checks below say why
    else:
        return _checked_bundle(
            fast["conversation"], fast.get("messages", []), fast.get("attachments", []), line_no
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveFormatError(
            line_no,
            f"not valid UTF-8 at byte {exc.start + 1} of the line (archive files are UTF-8)",
        ) from None
    if line_no == 1 and text.startswith("\ufeff"):
        text = text[1:]  # a byte order mark that an editor added
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ArchiveFormatError(
            line_no, f"not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except _NotJSON as exc:
        raise ArchiveFormatError(line_no, f"not valid JSON: {exc}") from None
    except ValueError as exc:
        # an integer beyond Python's digit limit; the advice after ";" is for programmers
        raise ArchiveFormatError(line_no, f"not valid JSON: {str(exc).split(';')[0]}") from None
    except RecursionError:
        raise ArchiveFormatError(line_no, "not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ArchiveFormatError(
            line_no,
            f"expected a JSON object (a header, a bundle or a run), not {_json_type(obj)}",
        )
    if "conversation" in obj:
        return _decode_bundle(obj, line_no)
    if "run" in obj:
        return _decode_run(obj, line_no)
    if "format" in obj:
        return _decode_header(obj, line_no)
    keys = ", ".join(repr(k) for k in sorted(obj)) or "none"
    raise ArchiveFormatError(
        line_no,
        "neither a header, a bundle nor a run: expected the key 'conversation', 'run'"
        f" or 'format' (keys found: {keys})",
    )


def _decode_bundle(obj: dict[str, Any], line_no: int) -> BundleItem:
    if len(obj) > 1 and not obj.keys() <= BUNDLE_KEYS:
        raise ArchiveFormatError(line_no, f"{_unknown(obj.keys() - BUNDLE_KEYS)} in a bundle line")
    raw_conversation = obj["conversation"]
    raw_messages = obj.get("messages", [])
    raw_attachments = obj.get("attachments", [])
    if not isinstance(raw_conversation, dict):
        raise ArchiveFormatError(
            line_no, f"conversation must be a JSON object, not {_json_type(raw_conversation)}"
        )
    if not isinstance(raw_messages, list):
        raise ArchiveFormatError(
            line_no, f"messages must be a JSON array, not {_json_type(raw_messages)}"
        )
    if not isinstance(raw_attachments, list):
        raise ArchiveFormatError(
            line_no, f"attachments must be a JSON array, not {_json_type(raw_attachments)}"
        )
    # strict: JSON has its own types, so "5" is not an integer and 1 is not true
    try:
        conversation = ConversationRecord.model_validate(raw_conversation, strict=True)
    except ValidationError as exc:
        raise ArchiveFormatError(line_no, _describe(exc, "conversation")) from None
    try:
        messages = _MESSAGES.validate_python(raw_messages, strict=True)
    except ValidationError as exc:
        raise ArchiveFormatError(line_no, _describe(exc, "messages")) from None
    try:
        attachments = _ATTACHMENTS.validate_python(raw_attachments, strict=True)
    except ValidationError as exc:
        raise ArchiveFormatError(line_no, _describe(exc, "attachments")) from None
    return _checked_bundle(conversation, messages, attachments, line_no)


def _checked_bundle(
    conversation: ConversationRecord,
    messages: list[MessageRecord],
    attachments: list[AttachmentRecord],
    line_no: int,
) -> BundleItem:
    try:
        check_bundle(conversation, messages, attachments, where=_where(conversation))
    except (BundleError, TypeError) as exc:
        raise ArchiveFormatError(line_no, str(exc)) from None
    return BundleItem(line_no, conversation, messages, attachments)


def _decode_run(obj: dict[str, Any], line_no: int) -> RunItem:
    if len(obj) != 1:
        raise ArchiveFormatError(line_no, f"{_unknown(obj.keys() - RUN_KEYS)} in a run line")
    raw_run = obj["run"]
    if not isinstance(raw_run, dict):
        raise ArchiveFormatError(line_no, f"run must be a JSON object, not {_json_type(raw_run)}")
    try:
        run = RunRecord.model_validate(raw_run, strict=True)
    except ValidationError as exc:
        raise ArchiveFormatError(line_no, _describe(exc, "run")) from None
    return RunItem(line_no, run)


def _decode_header(obj: dict[str, Any], line_no: int) -> Header:
    name = obj["format"]
    if name != FORMAT_NAME:
        raise ArchiveFormatError(
            line_no,
            f"not a polylogue archive: the header names the format {name!r},"
            f" expected {FORMAT_NAME!r}",
        )
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ArchiveFormatError(
            line_no,
            f"the header's version must be a whole number from 1, not {json.dumps(version)}",
        )
    if version > FORMAT_VERSION:
        raise ArchiveFormatError(
            line_no,
            f"archive format version {version} is newer than this polylogue reads"
            f" ({FORMAT_VERSION}); upgrade polylogue-storage",
        )
    if not obj.keys() <= HEADER_KEYS:
        raise ArchiveFormatError(line_no, f"{_unknown(obj.keys() - HEADER_KEYS)} in the header")
    if line_no != 1:
        raise ArchiveFormatError(
            line_no,
            "a header may only be the first line of a file (were files concatenated?"
            " remove the later header lines)",
        )
    return Header(version)


# --- messages ------------------------------------------------------------------------


def _where(conversation: ConversationRecord) -> str:
    return f"conversation {conversation.conversation_id!r}"


def _unknown(keys: Any) -> str:
    names = sorted(keys)
    return ("unknown key " if len(names) == 1 else "unknown keys ") + ", ".join(map(repr, names))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _describe(exc: ValidationError, record: str) -> str:
    """``messages[2].role: Input should be a valid string`` (up to 3, then a count)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:MAX_ERRORS_SHOWN]:
        path = record
        for key in error["loc"]:
            path += f"[{key}]" if isinstance(key, int) else f".{key}"
        parts.append(f"{path}: {error['msg'].removeprefix('Value error, ')}")
    text = "; ".join(parts)
    if len(errors) > MAX_ERRORS_SHOWN:
        text += f" (+{len(errors) - MAX_ERRORS_SHOWN} more)"
    return text


__all__ = [
    "BUNDLE_KEYS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ArchiveFormatError",
    "BundleItem",
    "Header",
    "Item",
    "RunItem",
    "decode_line",
    "encode_bundle",
    "encode_header",
    "encode_run",
]
