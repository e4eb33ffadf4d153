"""The migration runner: numbered SQL scripts, applied once each, in order.

``migrations/<dialect>/NNNN_slug.sql`` holds the schema history; the number is the schema
version the script produces. The runner refuses gaps and duplicate numbers, applies every
pending script in its own transaction under a write lock (so two processes migrating the
same database apply each script once), and records version, name, sha256 checksum and time
in ``schema_migrations``. How a dialect stores its version, takes the lock and runs a script
is the backend's business (:class:`MigrationTarget`); the order of things is decided here.

A script whose first line is ``-- polylogue: no-transaction`` runs outside a transaction
(PostgreSQL's ``CREATE INDEX CONCURRENTLY`` needs that); the target decides how to lock it.

Applied scripts are never edited, with one explicit exception: a fix that has the same
effect (SQLite's 0002 was rewritten to build its index before recounting, not after) names
the text it replaces in its header, ``-- polylogue: replaces sha256:<checksum of the old
file>``. A database that recorded a listed checksum is not drift; any other difference is.

Before the first script changes a database that already holds a schema (version >= 1), a
target that can (:class:`BackupTarget`, SQLite) writes a backup of it, named in every
error that follows; the target checks each script's result before committing it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from polylogue.errors import MigrationError, SchemaVersionError
from polylogue.storage.faults import cleaning_up
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


class MigrationTarget(Protocol):
    """What a backend gives the runner: one connection and its dialect's mechanics."""

    dialect: str
    queries: Any

    def migration_connection(self) -> AbstractContextManager[Any]:
        """A connection outside any transaction, prepared for migrating, for the run."""

    def begin_locked(self, conn: Any) -> None:
        """Open a transaction holding the migration write lock."""

    def commit(self, conn: Any) -> None: ...

    def rollback(self, conn: Any) -> None: ...

    def read_version(self, conn: Any) -> int:
        """The schema version the database is at (0 when empty)."""

    def write_version(self, conn: Any, version: int) -> None:
        """Store ``version`` (inside the script's transaction)."""

    def run_script(self, conn: Any, sql: str) -> None:
        """Execute every statement of ``sql`` on ``conn``."""

    def check_before_commit(self, conn: Any) -> None:
        """Raise if the script left the database inconsistent."""

    def session_lock(self, conn: Any) -> AbstractContextManager[None]:
        """Hold the migration lock outside a transaction (for ``no-transaction`` scripts).

        Raise :class:`MigrationError` if the dialect has no such scripts.
        """

    def run_script_outside_transaction(self, conn: Any, sql: str) -> None:
        """Execute ``sql`` statement by statement, each committing on its own."""


@runtime_checkable
class BackupTarget(Protocol):
    """A target that can copy the database aside before migrating it (SQLite)."""

    def write_backup(self, conn: Any, version: int, reaching: int) -> Path | None:
        """Copy the database, at ``version``, beside it before it is migrated to
        ``reaching``; return the copy, or None when there is nothing to copy (memory, or
        backups turned off for this backend). ``conn`` holds the migration lock."""


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


class MigrationRunner:
    """Applies the scripts of ``target.dialect`` to the database behind ``target``."""

    def __init__(
        self, target: MigrationTarget, folder: Path | None = None, *, where: str = ""
    ) -> None:
        self.target = target
        self.where = where
        """The database, for messages (``backend.describe()``)."""
        self.scripts = discover(target.dialect, folder)
        self.target_version = self.scripts[-1].version
        self.backup_path: Path | None = None
        """The backup the last :meth:`migrate` wrote before changing the database, if any."""
        self._backup_to: BackupTarget | None = None
        """Who writes the backup this run still owes, if it owes one."""

    def status(self) -> MigrationStatus:
        """Report version, applied scripts with checksums, pending scripts; change nothing."""
        with self.target.migration_connection() as conn:
            current = self.target.read_version(conn)
            applied = self._applied(conn)
        return self._status(current, applied)

    def migrate(
        self, *, dry_run: bool = False, allow_changed: bool = False, backup: bool = True
    ) -> list[MigrationScript]:
        """Apply pending scripts (or, with ``dry_run``, list them) and return them.

        With ``backup`` (the default), a database at version >= 1 is first copied beside
        itself if the target can (:class:`BackupTarget`); :attr:`backup_path` names the
        copy. Raises :class:`SchemaVersionError` for a database newer than this code and
        :class:`MigrationError` when an applied script was edited (unless
        ``allow_changed``), the backup cannot be written, or a script or the check of its
        result fails; a failed script leaves the database at the version it had before
        that script, and the error names the backup.
        """
        self.backup_path = None
        with self.target.migration_connection() as conn:
            status = self._status(self.target.read_version(conn), self._applied(conn))
            # Decided by the version the run starts from: a new database migrated from 0
            # has nothing to lose, even once its first script has run.
            due = backup and status.current_version >= 1
            self._backup_to = self.target if due and isinstance(self.target, BackupTarget) else None
            if status.changed and not allow_changed:
                names = ", ".join(
                    f"{m.name} (applied sha256:{m.checksum[:12]},"
                    f" file now sha256:{(m.file_checksum or '')[:12]})"
                    for m in status.changed
                )
                raise MigrationError(
                    f"applied migration scripts have been edited since: {names}; restore them,"
                    " or pass allow_changed=True (polylogue migrate --allow-changed) to go on"
                )
            if dry_run:
                return status.pending
            done: list[MigrationScript] = []
            for script in status.pending:
                if self._apply(conn, script):
                    done.append(script)
            if not status.pending and status.unrecorded:
                self._adopt_only(conn)
            return done

    def _status(self, current: int, applied: list[AppliedMigration]) -> MigrationStatus:
        if current > self.target_version:
            raise SchemaVersionError(
                f"Unsupported DB schema version {current} (expected {self.target_version})"
                + (f" in {self.where}" if self.where else "")
                + ": a newer polylogue wrote it; upgrade polylogue to use it"
            )
        recorded = {m.version for m in applied}
        return MigrationStatus(
            current_version=current,
            target_version=self.target_version,
            applied=applied,
            pending=[s for s in self.scripts if s.version > current],
            unrecorded=[
                s.version
                for s in self.scripts
                if s.version <= current and s.version not in recorded
            ],
        )

    def _applied(self, conn: Any) -> list[AppliedMigration]:
        queries = self.target.queries
        if not queries.schema_migrations_exists(conn):
            return []
        by_version = {s.version: s for s in self.scripts}
        applied = []
        for row in queries.get_applied_migrations(conn):
            version = int(row["version"])
            script = by_version.get(version)
            applied.append(
                AppliedMigration(
                    version=version,
                    name=str(row["name"]),
                    checksum=str(row["checksum"]),
                    applied_at=str(row["applied_at"]),
                    file_checksum=script.checksum if script else None,
                    file_replaces=script.replaces if script else frozenset(),
                )
            )
        return applied

    def _apply(self, conn: Any, script: MigrationScript) -> bool:
        """Apply one script unless another process got there first; True when applied."""
        if script.no_transaction:
            return self._apply_without_transaction(conn, script)
        target = self.target
        current = script.version - 1
        backing_up = False
        target.begin_locked(conn)
        try:
            current = target.read_version(conn)
            if current >= script.version:
                target.rollback(conn)
                return False
            self._check_next(current, script)
            # Inside the lock: the copy is exactly what this run starts from, and of
            # several processes opening one old archive only the one that migrates copies.
            backing_up = True
            self._back_up(conn, current)
            backing_up = False
            self._record_missing(conn, current)
            target.run_script(conn, script.sql)
            self._record(conn, script)
            target.write_version(conn, script.version)
            target.check_before_commit(conn)
            target.commit(conn)
        except BaseException as exc:
            with cleaning_up(exc, "the rollback"):
                target.rollback(conn)
            if isinstance(exc, SchemaVersionError) or not isinstance(exc, Exception):
                raise
            if backing_up:
                raise _backup_failed(exc, current) from exc
            raise MigrationError(
                f"migration {script.path.name} failed: {exc}; the database is still at"
                f" version {current}{self._backup_note()}"
            ) from exc
        return True

    def _back_up(self, conn: Any, current: int) -> None:
        """Write the backup once per run, before the first script touches a database
        that held a schema when the run started."""
        writer, self._backup_to = self._backup_to, None
        if writer is not None and current >= 1:
            self.backup_path = writer.write_backup(conn, current, self.target_version)

    def _backup_note(self) -> str:
        if self.backup_path is None:
            return ""
        return f"; the backup made before migrating is {self.backup_path}"

    def _apply_without_transaction(self, conn: Any, script: MigrationScript) -> bool:
        """Run a ``no-transaction`` script under the session lock, then record it."""
        target = self.target
        with ExitStack() as stack:
            try:
                stack.enter_context(target.session_lock(conn))
            except MigrationError as exc:
                raise MigrationError(f"migration {script.path.name}: {exc}") from exc
            current = target.read_version(conn)
            if current >= script.version:
                return False
            self._check_next(current, script)
            try:
                self._back_up(conn, current)
            except Exception as exc:
                raise _backup_failed(exc, current) from exc
            try:
                target.run_script_outside_transaction(conn, script.sql)
            except Exception as exc:
                raise MigrationError(
                    f"migration {script.path.name} (no-transaction) failed: {exc}; the"
                    f" database is still at version {current}; statements of the script that"
                    " completed before the failure are not undone, so write such scripts to"
                    f" be re-runnable (IF NOT EXISTS){self._backup_note()}"
                ) from exc
            target.begin_locked(conn)
            try:
                self._record_missing(conn, current)
                self._record(conn, script)
                target.write_version(conn, script.version)
                target.commit(conn)
            except BaseException as exc:
                with cleaning_up(exc, "the rollback"):
                    target.rollback(conn)
                raise
        return True

    def _adopt_only(self, conn: Any) -> None:
        target = self.target
        target.begin_locked(conn)
        try:
            self._record_missing(conn, target.read_version(conn))
            target.commit(conn)
        except BaseException as exc:
            with cleaning_up(exc, "the rollback"):
                target.rollback(conn)
            raise

    def _check_next(self, current: int, script: MigrationScript) -> None:
        if current == 0 and script is self.scripts[0]:
            return
        if current != script.version - 1:
            raise MigrationError(
                f"cannot apply {script.path.name} to a database at version {current}"
            )

    def _record_missing(self, conn: Any, current: int) -> None:
        """Adopt a database made before ``schema_migrations`` existed: record its versions."""
        queries = self.target.queries
        queries.create_schema_migrations(conn)
        recorded = {int(row["version"]) for row in queries.get_applied_migrations(conn)}
        for script in self.scripts:
            if script.version <= current and script.version not in recorded:
                self._record(conn, script)

    def _record(self, conn: Any, script: MigrationScript) -> None:
        self.target.queries.record_migration(
            conn,
            version=script.version,
            name=script.name,
            checksum=script.checksum,
            applied_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def _backup_failed(exc: Exception, current: int) -> MigrationError:
    return MigrationError(
        f"no backup before migrating: {exc}; nothing was migrated (the database is still at"
        f" version {current}): make room for the copy, or migrate without one"
        " (polylogue migrate --no-backup, backup=False)"
    )


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
    "NO_TRANSACTION_MARKER",
    "REPLACES_DIRECTIVE",
    "AppliedMigration",
    "BackupTarget",
    "MigrationRunner",
    "MigrationScript",
    "MigrationStatus",
    "MigrationTarget",
    "discover",
    "iter_statements",
]
