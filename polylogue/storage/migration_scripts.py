"""Migration scripts on disk: names, order, header directives, statements; and what the
runner reports about them.

Kept apart from the runner (:mod:`polylogue.storage.migrate`) because it needs no database:
``discover`` is what reads ``migrations/<dialect>/``, and it is all that the schema version
constants and the script checks in the tests need. The result records
(:class:`AppliedMigration`, :class:`MigrationStatus`) are plain data about scripts, so they
live here too and keep the runner short; :mod:`~polylogue.storage.migrate` re-exports them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polylogue.errors import MigrationError
from polylogue.storage.sqlfiles import resource_dir

DIRECTIVE_PREFIX = "-- polylogue:"
NO_TRANSACTION_MARKER = f"{DIRECTIVE_PREFIX} no-transaction"
REPLACES_DIRECTIVE = f"{DIRECTIVE_PREFIX} replaces sha256:"
_SCRIPT_NAME = re.compile(r"(?P<version>\d{4})_(?P<slug>[a-z0-9][a-z0-9_]*)\.sql")
_REPLACES = re.compile(r"replaces sha256:(?P<checksum>[0-9a-f]{64})")


@dataclass(frozen=True)
class MigrationScript:
    """One numbered script on disk."""

    version: int
    name: str
    path: Path
    sql: str
    checksum: str
    no_transaction: bool
    replaces: frozenset[str] = frozenset()
    """Checksums of earlier texts of this script that had the same effect."""


@dataclass(frozen=True)
class AppliedMigration:
    """One row of ``schema_migrations``, compared with the script on disk."""

    version: int
    name: str
    checksum: str
    applied_at: str
    file_checksum: str | None
    file_replaces: frozenset[str] = frozenset()

    @classmethod
    def of(cls, row: Mapping[str, Any], script: MigrationScript | None) -> AppliedMigration:
        """A ``get_applied_migrations`` row beside its script on disk (None: no such file)."""
        return cls(
            version=int(row["version"]),
            name=str(row["name"]),
            checksum=str(row["checksum"]),
            applied_at=str(row["applied_at"]),
            file_checksum=script.checksum if script else None,
            file_replaces=script.replaces if script else frozenset(),
        )

    @property
    def changed(self) -> bool:
        """The script on disk is no longer the one that was applied, nor declares it
        replaces that text (drift)."""
        return (
            self.file_checksum is not None
            and self.file_checksum != self.checksum
            and self.checksum not in self.file_replaces
        )

    @property
    def earlier_text(self) -> bool:
        """Applied as an earlier text that the script on disk declares it replaces."""
        return self.checksum != self.file_checksum and self.checksum in self.file_replaces


@dataclass(frozen=True)
class MigrationStatus:
    """Where a database stands against the scripts that ship with this code."""

    current_version: int
    target_version: int
    applied: list[AppliedMigration]
    pending: list[MigrationScript]
    unrecorded: list[int] = field(default_factory=list)

    @property
    def changed(self) -> list[AppliedMigration]:
        """Applied scripts whose file has been edited since (drift)."""
        return [m for m in self.applied if m.changed]


def discover(dialect: str, folder: Path | None = None) -> list[MigrationScript]:
    """The scripts of ``dialect`` in version order; refuses bad names, gaps, duplicates."""
    folder = folder or resource_dir("migrations", dialect)
    scripts: dict[int, MigrationScript] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _SCRIPT_NAME.fullmatch(path.name)
        if not match:
            raise MigrationError(
                f"{path}: migration scripts are named NNNN_short_slug.sql"
                " (four digits, lower-case slug)"
            )
        version = int(match["version"])
        if version in scripts:
            raise MigrationError(
                f"{path}: version {version} is also {scripts[version].path.name};"
                " each version has exactly one script"
            )
        raw = path.read_bytes()
        sql = raw.decode("utf-8")
        scripts[version] = MigrationScript(
            version=version,
            name=path.stem,
            path=path,
            sql=sql,
            checksum=hashlib.sha256(raw).hexdigest(),
            no_transaction=sql.lstrip().startswith(NO_TRANSACTION_MARKER),
            replaces=_replaced_checksums(path, sql),
        )
    ordered = [scripts[v] for v in sorted(scripts)]
    if not ordered:
        raise MigrationError(f"{folder}: no migration scripts")
    first = ordered[0]
    if first.version != 1 and not is_baseline(first):
        raise MigrationError(
            f"{folder}: no script for version 1 before {first.path.name}; only a"
            " NNNN_baseline*.sql script may start the history above version 1"
        )
    for expected, script in enumerate(ordered, start=first.version):
        if script.version != expected:
            raise MigrationError(
                f"{folder}: no script for version {expected} before {script.path.name};"
                " versions must follow each other without gaps"
            )
    return ordered


def _replaced_checksums(path: Path, sql: str) -> frozenset[str]:
    """The ``-- polylogue: replaces sha256:<hex>`` lines of the script's header.

    Only the comment lines before the first statement count. An unknown or malformed
    ``-- polylogue:`` directive there is an error: a typo must not silently turn drift
    detection off, nor a script meant to run outside a transaction into one that does not.
    """
    found: set[str] = set()
    first_line = True
    for number, line in enumerate(sql.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        if stripped.startswith(DIRECTIVE_PREFIX):
            directive = stripped[len(DIRECTIVE_PREFIX) :].strip()
            replaced = _REPLACES.fullmatch(directive)
            if replaced:
                found.add(replaced["checksum"])
            elif directive != "no-transaction" or not first_line:
                raise MigrationError(
                    f"{path}:{number}: unknown migration directive {stripped!r}; the header"
                    f" may hold '{NO_TRANSACTION_MARKER}' (first line only) and"
                    f" '{REPLACES_DIRECTIVE}<64 lower-case hex digits of the earlier file>'"
                )
        first_line = False
    return frozenset(found)


def is_baseline(script: MigrationScript) -> bool:
    """A baseline creates the whole schema at its version on an empty database.

    PostgreSQL and DuckDB start from one (``0004_baseline.sql``) instead of replaying
    SQLite's history; it applies only to a database at version 0.
    """
    return script.name.split("_", 1)[1].startswith("baseline")


def iter_statements(script: str, is_complete: Any) -> Iterator[str]:
    """Split ``script`` into statements using the driver's ``is_complete(text)`` test.

    Splitting at every ``;`` and gluing pieces until the driver says the text is a complete
    statement keeps semicolons inside strings, comments and trigger bodies intact.
    """
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if is_complete(buffer):
            if _has_code(buffer):
                yield buffer
            buffer = ""
    if _has_code(buffer.rstrip(";")):
        yield buffer


def _has_code(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("--") and stripped != ";":
            return True
    return False


__all__ = [
    "DIRECTIVE_PREFIX",
    "NO_TRANSACTION_MARKER",
    "REPLACES_DIRECTIVE",
    "AppliedMigration",
    "MigrationScript",
    "MigrationStatus",
    "discover",
    "is_baseline",
    "iter_statements",
]
