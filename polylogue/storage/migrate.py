"""The migration runner: numbered SQL scripts, applied once each, in order, on every dialect.

``migrations/<dialect>/NNNN_slug.sql`` holds the schema history; the number is the schema
version the script produces. The runner refuses gaps and duplicate numbers, applies every
pending script in its own transaction under a write lock (so two processes migrating the
same database apply each script once), and records version, name, sha256 checksum and time
in ``schema_migrations``.

There is one target shape: the backend itself (:class:`MigrationBackend`). It lends the
runner a connection outside any transaction and its own transaction verbs; everything else
is named queries, and what differs by dialect is *which* queries its set declares
(``dialect_queries``), so the order of things lives here once:

- the version is the newest recorded script where ``current_schema_version`` is declared
  (PostgreSQL, DuckDB), else SQLite's ``PRAGMA user_version``, written in each script's
  transaction;
- ``lock_migrations(lock_key)`` and ``create_schema_if_missing`` run first in each
  transaction where declared (PostgreSQL's advisory lock); elsewhere BEGIN is the lock
  (SQLite's ``BEGIN IMMEDIATE``, DuckDB's write lock);
- a script whose first line is ``-- polylogue: no-transaction`` (PostgreSQL's ``CREATE
  INDEX CONCURRENTLY``) runs under ``lock_migrations_session`` where declared, and is
  refused elsewhere;
- ``foreign_key_check``, ``quick_check`` and ``dangling_references`` check each script's
  result before its commit where declared.

Two things are not queries and stay small hooks on the backend: copying the database aside
(:meth:`MigrationBackend.write_migration_backup`, a file copy; SQLite only) and preparing
the connection (:meth:`MigrationBackend.migration_connection`; SQLite turns foreign keys off
there, which table rebuilds need and which only takes effect outside a transaction).
A third, :meth:`MigrationBackend.migration_statements`, says how the driver takes a script.

Applied scripts are never edited, with one explicit exception: a fix that has the same
effect (SQLite's 0002 was rewritten to build its index before recounting, not after) names
the text it replaces in its header, ``-- polylogue: replaces sha256:<checksum of the old
file>``. A database that recorded a listed checksum is not drift; any other difference is.
Before the first script changes a database that already holds a schema (version >= 1), the
backend may write a backup of it, named in every error that follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from polylogue.errors import MigrationError, SchemaVersionError
from polylogue.storage.faults import cleaning_up
from polylogue.storage.migration_scripts import (
    NO_TRANSACTION_MARKER,
    REPLACES_DIRECTIVE,
    MigrationScript,
    discover,
    is_baseline,
    iter_statements,
)


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


class MigrationBackend(Protocol):
    """What the runner needs of a backend (:class:`~polylogue.storage.backends.base.SQLBackend`)."""

    queries: Any

    @property
    def dialect_queries(self) -> Mapping[str, Any]:
        """The queries only its dialect declares (which of the optional ones it has)."""

    @property
    def migration_lock_key(self) -> int:
        """The ``lock_key`` of the ``lock_migrations*`` queries, where declared."""

    @property
    def migration_dialect(self) -> str:
        """The folder of its scripts under ``migrations/``."""

    def migration_statements(self, sql: str) -> Iterable[str]:
        """The statements of a script, as the driver runs them."""

    def migration_connection(self) -> AbstractContextManager[Any]:
        """A connection outside any transaction, prepared for migrating, for the run."""

    def migration_transaction(self, conn: Any) -> AbstractContextManager[None]:
        """BEGIN ... COMMIT on ``conn`` with the binding's own verbs; any failure rolls back."""

    def migration_errors(self, operation: str) -> AbstractContextManager[None]:
        """Driver errors as :class:`~polylogue.errors.DatabaseError` naming ``operation``."""

    def write_migration_backup(self, conn: Any, version: int, reaching: int) -> Path | None:
        """Copy the database (at ``version``) aside before it is migrated to ``reaching``;
        None when there is nothing to copy. ``conn`` holds the migration lock."""


class MigrationRunner:
    """Applies the scripts of ``target``'s dialect to the database behind it."""

    def __init__(
        self, target: MigrationBackend, folder: Path | None = None, *, where: str = ""
    ) -> None:
        self.target = target
        self.where = where
        """The database, for messages (``backend.describe()``)."""
        self.scripts = discover(target.migration_dialect, folder)
        self.target_version = self.scripts[-1].version
        self.backup_path: Path | None = None
        """The backup the last :meth:`migrate` wrote before changing the database, if any."""
        self._backup_due = False

    def status(self) -> MigrationStatus:
        """Report version, applied scripts with checksums, pending scripts; change nothing."""
        with self.target.migration_connection() as conn:
            return self._status(read_version(self.target, conn), self._applied(conn))

    def migrate(
        self, *, dry_run: bool = False, allow_changed: bool = False, backup: bool = True
    ) -> list[MigrationScript]:
        """Apply pending scripts (or, with ``dry_run``, list them) and return them.

        With ``backup`` (the default), a database at version >= 1 is first copied beside
        itself if the backend can (SQLite); :attr:`backup_path` names the copy. Raises
        :class:`SchemaVersionError` for a database newer than this code and
        :class:`MigrationError` when an applied script was edited (unless
        ``allow_changed``), the backup cannot be written, or a script or the check of its
        result fails; a failed script leaves the database at the version it had before
        that script, and the error names the backup.
        """
        self.backup_path = None
        with self.target.migration_connection() as conn:
            status = self._status(read_version(self.target, conn), self._applied(conn))
            # Decided by the version the run starts from: a new database migrated from 0
            # has nothing to lose, even once its first script has run.
            self._backup_due = backup and status.current_version >= 1
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
            done = [script for script in status.pending if self._apply(conn, script)]
            if not status.pending and status.unrecorded:
                with self._locked(conn):
                    self._record_missing(conn, read_version(self.target, conn))
            return done

    def run_script(self, conn: Any, sql: str) -> None:
        """Execute every statement of ``sql`` on ``conn``."""
        for statement in self.target.migration_statements(sql):
            with self.target.migration_errors("migrate"):
                conn.execute(statement)

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
            script = by_version.get(int(row["version"]))
            applied.append(
                AppliedMigration(
                    version=int(row["version"]),
                    name=str(row["name"]),
                    checksum=str(row["checksum"]),
                    applied_at=str(row["applied_at"]),
                    file_checksum=script.checksum if script else None,
                    file_replaces=script.replaces if script else frozenset(),
                )
            )
        return applied

    def _has(self, query: str) -> bool:
        return query in self.target.dialect_queries

    @contextmanager
    def _locked(self, conn: Any) -> Iterator[None]:
        """One transaction holding the migration lock: BEGIN, then the dialect's lock."""
        with self.target.migration_transaction(conn):
            with self.target.migration_errors("migrate (begin)"):
                if self._has("lock_migrations"):
                    self.target.queries.lock_migrations(
                        conn, lock_key=self.target.migration_lock_key
                    )
                if self._has("create_schema_if_missing"):
                    self.target.queries.create_schema_if_missing(conn)
            yield

    def _apply(self, conn: Any, script: MigrationScript) -> bool:
        """Apply one script unless another process got there first; True when applied."""
        if script.no_transaction:
            return self._apply_without_transaction(conn, script)
        current, backing_up = script.version - 1, False
        try:
            with self._locked(conn):
                current = read_version(self.target, conn)
                if current >= script.version:
                    return False
                self._check_next(current, script)
                # Inside the lock: the copy is exactly what this run starts from, and of
                # several processes opening one old archive only the one that migrates copies.
                backing_up = True
                self._back_up(conn, current)
                backing_up = False
                self._record_missing(conn, current)
                self.run_script(conn, script.sql)
                self._record(conn, script)
                self._write_version(conn, script.version)
                self._check_result(conn)
        except Exception as exc:
            if isinstance(exc, SchemaVersionError):
                raise
            if backing_up:
                raise _backup_failed(exc, current) from exc
            raise MigrationError(
                f"migration {script.path.name} failed: {exc}; the database is still at"
                f" version {current}{self._backup_note()}"
            ) from exc
        return True

    def _apply_without_transaction(self, conn: Any, script: MigrationScript) -> bool:
        """Run a ``no-transaction`` script under the session lock, then record it."""
        if not self._has("lock_migrations_session"):
            name = _DIALECT_NAMES.get(self.target.migration_dialect, self.target.migration_dialect)
            raise MigrationError(
                f"migration {script.path.name}: {name} migrations always run in a"
                " transaction; remove the no-transaction marker"
            )
        with self._session_locked(conn):
            current = read_version(self.target, conn)
            if current >= script.version:
                return False
            self._check_next(current, script)
            try:
                self._back_up(conn, current)
            except Exception as exc:
                raise _backup_failed(exc, current) from exc
            try:
                # One statement per execute: several in one call would form an implicit
                # transaction, where CREATE INDEX CONCURRENTLY is refused.
                self.run_script(conn, script.sql)
            except Exception as exc:
                raise MigrationError(
                    f"migration {script.path.name} (no-transaction) failed: {exc}; the"
                    f" database is still at version {current}; statements of the script that"
                    " completed before the failure are not undone, so write such scripts to"
                    f" be re-runnable (IF NOT EXISTS){self._backup_note()}"
                ) from exc
            with self._locked(conn):
                self._record_missing(conn, current)
                self._record(conn, script)
                self._write_version(conn, script.version)
        return True

    @contextmanager
    def _session_locked(self, conn: Any) -> Iterator[None]:
        queries, key = self.target.queries, self.target.migration_lock_key
        with self.target.migration_errors("migrate (session lock)"):
            queries.lock_migrations_session(conn, lock_key=key)
        try:
            yield
        except BaseException as exc:
            with cleaning_up(exc, "the unlock"):
                self._unlock_session(conn)
            raise
        self._unlock_session(conn)

    def _unlock_session(self, conn: Any) -> None:
        if not getattr(conn, "closed", False):  # a lost session has released its lock
            with self.target.migration_errors("migrate (session unlock)"):
                self.target.queries.unlock_migrations_session(
                    conn, lock_key=self.target.migration_lock_key
                )

    def _back_up(self, conn: Any, current: int) -> None:
        """Write the backup once per run, before the first script touches a database
        that held a schema when the run started."""
        due, self._backup_due = self._backup_due, False
        if due and current >= 1:
            self.backup_path = self.target.write_migration_backup(
                conn, current, self.target_version
            )

    def _backup_note(self) -> str:
        if self.backup_path is None:
            return ""
        return f"; the backup made before migrating is {self.backup_path}"

    def _check_next(self, current: int, script: MigrationScript) -> None:
        if current == 0 and script is self.scripts[0]:
            return
        if current != script.version - 1:
            raise MigrationError(
                f"cannot apply {script.path.name} to a database at version {current}"
            )

    def _check_result(self, conn: Any) -> None:
        """Raise if the script left the database inconsistent (the dialect's checks)."""
        queries = self.target.queries
        if self._has("foreign_key_check"):
            broken = [tuple(row) for row in queries.foreign_key_check(conn)]
            if broken:
                raise MigrationError(
                    f"foreign key check failed after the script: {len(broken)} rows, first"
                    f" {broken[:5]} (table, rowid, parent, fkid)"
                )
        if self._has("quick_check"):
            # Sees the script's uncommitted pages: a damaged file or a NOT NULL/CHECK
            # violation is found before anything is committed, not by the next reader.
            problems = [str(row["problem"]) for row in queries.quick_check(conn)]
            if problems != ["ok"]:
                raise MigrationError(
                    f"quick_check failed after the script: {len(problems)} problems, first"
                    f" {problems[:3]}"
                )
        if self._has("dangling_references"):
            # DuckDB's schema has no foreign keys (see its baseline): this stands in.
            dangling = queries.dangling_references(conn)
            if dangling:
                first = ", ".join(
                    f"{row['child']} -> {row['parent']} ({row['key']!r})" for row in dangling
                )
                raise MigrationError(f"the script left rows pointing at nothing: {first}")

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

    def _write_version(self, conn: Any, version: int) -> None:
        """SQLite keeps its version in the file header (elsewhere: the newest record)."""
        if not self._has("current_schema_version"):
            conn.execute(f"PRAGMA user_version = {int(version)}")


_DIALECT_NAMES = {"sqlite": "SQLite", "duckdb": "DuckDB", "postgres": "PostgreSQL"}


def read_version(target: MigrationBackend, conn: Any) -> int:
    """The schema version the database behind ``conn`` is at (0 when empty)."""
    with target.migration_errors("read schema version"):
        if "current_schema_version" not in target.dialect_queries:
            return read_user_version(conn)
        if not target.queries.schema_migrations_exists(conn):
            return 0
        return int(target.queries.current_schema_version(conn))


def read_user_version(conn: Any) -> int:
    """SQLite's ``PRAGMA user_version``: where SQLite keeps its schema version."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _backup_failed(exc: Exception, current: int) -> MigrationError:
    return MigrationError(
        f"no backup before migrating: {exc}; nothing was migrated (the database is still at"
        f" version {current}): make room for the copy, or migrate without one"
        " (polylogue migrate --no-backup, backup=False)"
    )


__all__ = [
    "NO_TRANSACTION_MARKER",
    "REPLACES_DIRECTIVE",
    "AppliedMigration",
    "MigrationBackend",
    "MigrationRunner",
    "MigrationScript",
    "MigrationStatus",
    "discover",
    "is_baseline",
    "iter_statements",
    "read_user_version",
    "read_version",
]
