"""The migration runner: numbered SQL scripts, applied once each, in order, on every dialect.

``migrations/<dialect>/NNNN_slug.sql`` holds the schema history (no gaps, no duplicates);
the number is the version the script produces. Each pending script runs in its own
transaction under a write lock (two processes migrating one database apply it once) and is
recorded, with its sha256 checksum and time, in ``schema_migrations``.

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

What is not a query stays a small hook on the backend: preparing the connection, how the
driver takes a script, and copying the database aside (a file copy; SQLite only).

Applied scripts are never edited (any difference is drift), except by a fix with the same
effect that names the text it replaces in its header, ``-- polylogue: replaces
sha256:<checksum of the old file>`` (SQLite's 0002 now builds its index before recounting).
Before the first script changes a database that already holds a schema (version >= 1), the
backend may write a backup of it, named in every error that follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from polylogue.errors import MigrationError, SchemaVersionError
from polylogue.storage.faults import cleaning_up
from polylogue.storage.migration_scripts import (
    AppliedMigration,
    MigrationScript,
    MigrationStatus,
    discover,
    is_baseline,
)


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
        """A connection outside any transaction, prepared for migrating, for the run
        (SQLite turns foreign keys off, which table rebuilds need, and only can out here)."""

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
            return self._status(conn)

    def migrate(
        self, *, dry_run: bool = False, allow_changed: bool = False, backup: bool = True
    ) -> list[MigrationScript]:
        """Apply pending scripts (or, with ``dry_run``, list them) and return them.

        With ``backup``, a database at version >= 1 is first copied beside itself where
        the backend can (SQLite; :attr:`backup_path`). Raises :class:`SchemaVersionError`
        for a database newer than this code, :class:`MigrationError` for an edited applied
        script (unless ``allow_changed``), a failed backup, script or check of its result;
        a failed script leaves the version it found, and the error names the backup.
        """
        self.backup_path = None
        with self.target.migration_connection() as conn:
            status = self._status(conn)
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

    def _status(self, conn: Any) -> MigrationStatus:
        """Where the database behind ``conn`` stands; refuses one newer than this code."""
        current = read_version(self.target, conn)
        if current > self.target_version:
            raise SchemaVersionError(
                f"Unsupported DB schema version {current} (expected {self.target_version})"
                + (f" in {self.where}" if self.where else "")
                + ": a newer polylogue wrote it; upgrade polylogue to use it"
            )
        applied = []
        if self.target.queries.schema_migrations_exists(conn):
            by_version = {s.version: s for s in self.scripts}
            for row in self.target.queries.get_applied_migrations(conn):
                applied.append(AppliedMigration.of(row, by_version.get(int(row["version"]))))
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
        """Apply one script unless another process got there first; True when applied.
        A no-transaction script runs under the session lock; its record, in a transaction."""
        if script.no_transaction and not self._has("lock_migrations_session"):
            name = _DIALECT_NAMES.get(self.target.migration_dialect, self.target.migration_dialect)
            raise MigrationError(
                f"migration {script.path.name}: {name} migrations always run in a"
                " transaction; remove the no-transaction marker"
            )
        current, stage = script.version - 1, "lock"
        try:
            with (self._session_locked if script.no_transaction else self._locked)(conn):
                current = read_version(self.target, conn)
                if current >= script.version:
                    return False
                starts_history = current == 0 and script is self.scripts[0]
                follows = current == script.version - 1 and not is_baseline(script)
                if not (starts_history or follows):
                    raise MigrationError(
                        f"cannot apply {script.path.name} to a database at version {current}"
                        + (
                            ": a baseline creates the whole schema, on an empty database only"
                            if is_baseline(script)
                            else ""
                        )
                    )
                # Inside the lock: the copy is exactly what this run starts from, and of
                # several processes opening one old archive only the one that migrates copies.
                stage = "backup"
                self._back_up(conn, current)
                # One statement per execute: several in one call would form an implicit
                # transaction, where (no-transaction) CREATE INDEX CONCURRENTLY is refused.
                stage = "script"
                self.run_script(conn, script.sql)
                stage = "record"
                if script.no_transaction:
                    with self._locked(conn):
                        self._record_applied(conn, script, current)
                else:
                    self._record_applied(conn, script, current)
                    self._check_result(conn)
        except Exception as exc:
            failure = self._failure(exc, script, stage, current)
            if failure is exc:
                raise
            raise failure from exc
        return True

    def _failure(
        self, exc: Exception, script: MigrationScript, stage: str, current: int
    ) -> Exception:
        """What to raise for ``exc`` met at ``stage`` of applying ``script``."""
        if isinstance(exc, SchemaVersionError):
            return exc
        if stage == "backup":
            return MigrationError(
                f"no backup before migrating: {exc}; nothing was migrated (the database is"
                f" still at version {current}): make room for the copy, or migrate without"
                " one (polylogue migrate --no-backup, backup=False)"
            )
        if not script.no_transaction:  # rolled back, whatever failed
            return MigrationError(
                f"migration {script.path.name} failed: {exc}; the database is still at"
                f" version {current}{self._backup_note()}"
            )
        if stage == "script":
            return MigrationError(
                f"migration {script.path.name} (no-transaction) failed: {exc}; the"
                f" database is still at version {current}; statements of the script that"
                " completed before the failure are not undone, so write such scripts to"
                f" be re-runnable (IF NOT EXISTS){self._backup_note()}"
            )
        return exc

    @contextmanager
    def _session_locked(self, conn: Any) -> Iterator[None]:
        """The session lock around a no-transaction script, released however it ends."""
        queries, key = self.target.queries, self.target.migration_lock_key
        with self.target.migration_errors("migrate (session lock)"):
            queries.lock_migrations_session(conn, lock_key=key)
        cause: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            cause = exc
            raise
        finally:
            if not getattr(conn, "closed", False):  # a lost session has released its lock
                unlocking = self.target.migration_errors("migrate (session unlock)")
                with cleaning_up(cause, "the unlock"), unlocking:
                    queries.unlock_migrations_session(conn, lock_key=key)

    def _back_up(self, conn: Any, current: int) -> None:
        """Write the backup once per run, before the first script touches a database
        that held a schema when the run started."""
        due, self._backup_due = self._backup_due, False
        if due and current >= 1:
            self.backup_path = self.target.write_migration_backup(
                conn, current, self.target_version
            )

    def _backup_note(self) -> str:
        note = f"; the backup made before migrating is {self.backup_path}"
        return note if self.backup_path else ""

    def _check_result(self, conn: Any) -> None:
        """Raise if the script left the database inconsistent (the dialect's checks)."""
        for query, problem_in in _RESULT_CHECKS:
            if self._has(query):
                problem = problem_in(list(getattr(self.target.queries, query)(conn)))
                if problem:
                    raise MigrationError(problem)

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

    def _record_applied(self, conn: Any, script: MigrationScript, current: int) -> None:
        """Record ``script`` (and any unrecorded version up to ``current``) and its version."""
        self._record_missing(conn, current)
        self._record(conn, script)
        if not self._has("current_schema_version"):  # SQLite keeps it in the file header
            conn.execute(f"PRAGMA user_version = {int(script.version)}")


_DIALECT_NAMES = {"sqlite": "SQLite", "duckdb": "DuckDB", "postgresql": "PostgreSQL"}


def _broken_foreign_keys(rows: list[Any]) -> str | None:
    first = [tuple(row) for row in rows[:5]]
    return (
        f"foreign key check failed after the script: {len(rows)} rows, first {first}"
        " (table, rowid, parent, fkid)"
        if rows
        else None
    )


def _quick_check_problems(rows: list[Any]) -> str | None:
    problems = [str(row["problem"]) for row in rows]
    return (
        f"quick_check failed after the script: {len(problems)} problems, first {problems[:3]}"
        if problems != ["ok"]
        else None
    )


def _dangling(rows: list[Any]) -> str | None:
    first = ", ".join(f"{row['child']} -> {row['parent']} ({row['key']!r})" for row in rows)
    return f"the script left rows pointing at nothing: {first}" if rows else None


# The checks of a script's result before its commit, where the dialect declares the query,
# with what its rows say is wrong (None: nothing).
_RESULT_CHECKS: tuple[tuple[str, Callable[[list[Any]], str | None]], ...] = (
    ("foreign_key_check", _broken_foreign_keys),
    # Sees the script's uncommitted pages: a damaged file or a NOT NULL/CHECK violation is
    # found before anything is committed, not by the next reader.
    ("quick_check", _quick_check_problems),
    # DuckDB's schema has no foreign keys (see its baseline): this stands in.
    ("dangling_references", _dangling),
)


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


__all__ = ["MigrationBackend", "MigrationRunner", "read_user_version", "read_version"]
