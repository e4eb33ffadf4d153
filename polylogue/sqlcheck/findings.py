"""What a check found: one problem, where it is, and how bad.

Every check of ``polylogue sql check`` returns a list of these, so that the command prints
them one way (``file:line query_name: message``) and ``--format json`` gives one object
per finding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Check = Literal["contract", "schema", "parity", "lint", "migrations"]
Severity = Literal["error", "warning", "not-checked"]


@dataclass(frozen=True)
class Finding:
    """One problem. ``file`` is relative to the repository (``sql/sqlite/messages.sql``)
    when it lies inside it; ``name`` is the query name or the lint rule id."""

    check: Check
    severity: Severity
    message: str
    dialect: str | None = None
    file: str | None = None
    line: int | None = None
    name: str | None = None

    def location(self) -> str:
        """``file:line name``, leaving out what is unknown."""
        where = self.file or (f"[{self.dialect}]" if self.dialect else "")
        if self.file and self.line is not None:
            where = f"{where}:{self.line}"
        return " ".join(part for part in (where, self.name or "") if part)

    def __str__(self) -> str:
        place = self.location()
        return f"{place}: {self.message}" if place else self.message

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_failure(finding: Finding) -> bool:
    """Whether ``finding`` makes ``polylogue sql check`` exit non-zero."""
    return finding.severity == "error"


__all__ = ["Check", "Finding", "Severity", "is_failure"]
