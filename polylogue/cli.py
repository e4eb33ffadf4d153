"""The ``polylogue`` command: migrate, inspect and summarise an archive database.

Every command takes ``--url`` (``sqlite:///path``, ``postgresql://...``, ``duckdb:///path``);
without it, ``POLYLOGUE_DATABASE_URL`` or the default SQLite file is used.

Errors are one line on stderr saying what failed, where and what to do, with exit status
1 (2 for usage errors); never a traceback, whatever failed (a database error, a file the
user may not read, an unexpected error). ``POLYLOGUE_DEBUG=1`` shows the traceback of an
unexpected one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from polylogue.errors import DatabaseError
from polylogue.storage.backends import SQLBackend, create_backend
from polylogue.storage.faults import cleaning_up, describe_os_error, one_line

URL_HELP = "Database URL (default: $POLYLOGUE_DATABASE_URL or the default SQLite file)."
DEBUG_ENV = "POLYLOGUE_DEBUG"


class _OneLineErrors(click.Group):
    """Every failure of a command becomes one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DatabaseError as exc:
            message = one_line(str(exc))
        except OSError as exc:
            message = (
                f"{describe_os_error(exc)}; check that this user may read and write the"
                " database and its folder"
            )
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            message = (
                f"unexpected {type(exc).__name__}: {one_line(str(exc))} (a bug: please report"
                f" it; {DEBUG_ENV}=1 shows the traceback)"
            )
        # Raised outside the except blocks: nothing chains to the original exception.
        raise click.ClickException(message)


@contextmanager
def _backend(url: str | None, *, migrate: bool) -> Iterator[SQLBackend]:
    backend = create_backend(url=url, migrate=migrate)
    try:
        yield backend
    except BaseException as exc:
        with cleaning_up(exc, "closing the database"):
            backend.close()
        raise
    backend.close()


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="polylogue-storage")
def main() -> None:
    """Storage kit of polylogue: an archive of AI chat conversations."""


@main.command()
@click.option("--url", default=None, help=URL_HELP)
@click.option("--dry-run", is_flag=True, help="List pending migrations; change nothing.")
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Go on although an applied migration script was edited since.",
)
@click.option(
    "--no-backup",
    is_flag=True,
    help="Do not copy a SQLite database aside (NAME.pre-vN-TIME.bak) before migrating it.",
)
def migrate(url: str | None, dry_run: bool, allow_changed: bool, no_backup: bool) -> None:
    """Apply pending schema migrations.

    A SQLite database that already holds a schema is first copied beside itself with
    SQLite's backup API (owner-only); each script's result is checked (quick_check,
    foreign_key_check) before it is committed.
    """
    with _backend(url, migrate=False) as backend:
        runner = backend.migration_runner()
        scripts = runner.migrate(dry_run=dry_run, allow_changed=allow_changed, backup=not no_backup)
        where = backend.describe()
        if runner.backup_path is not None:
            click.echo(f"backup written before migrating: {runner.backup_path}")
        if not scripts:
            click.echo(f"{where}: up to date at schema version {runner.target_version}")
            return
        verb = "would apply" if dry_run else "applied"
        for script in scripts:
            click.echo(f"{verb} {script.name}")
        version = scripts[-1].version
        click.echo(f"{where}: {'would be' if dry_run else 'now'} at schema version {version}")


@main.command()
@click.option("--url", default=None, help=URL_HELP)
def status(url: str | None) -> None:
    """Show schema version, applied and pending migrations, and edited scripts."""
    with _backend(url, migrate=False) as backend:
        report = backend.migration_runner().status()
        click.echo(f"database: {backend.describe()}")
        click.echo(f"schema version: {report.current_version} (code: {report.target_version})")
        click.echo("applied:")
        if not report.applied and not report.unrecorded:
            click.echo("  (none)")
        for m in report.applied:
            mark = "  EDITED since applied" if m.changed else ""
            if m.earlier_text:
                now = (m.file_checksum or "")[:16]
                mark = f"  applied as an earlier text (file now sha256:{now}, same effect)"
            click.echo(f"  {m.name}  sha256:{m.checksum[:16]}  {m.applied_at}{mark}")
        for version in report.unrecorded:
            click.echo(
                f"  version {version}: applied before checksums were kept (adopted on migrate)"
            )
        click.echo("pending:")
        for script in report.pending:
            click.echo(f"  {script.name}  sha256:{script.checksum[:16]}")
        if not report.pending:
            click.echo("  (none)")
        click.echo("drift:")
        for m in report.changed:
            click.echo(
                f"  {m.name}: applied sha256:{m.checksum[:16]}, file now"
                f" sha256:{(m.file_checksum or '')[:16]}"
            )
        if not report.changed:
            click.echo("  (none)")


@main.command()
@click.option("--url", default=None, help=URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def stats(url: str | None, as_json: bool) -> None:
    """Counts per provider and messages per provider per month."""
    with _backend(url, migrate=True) as backend:
        summary = backend.stats()
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'provider':<20} {'conversations':>13} {'messages':>10} {'attachments':>11}")
    for row in summary["providers"]:
        click.echo(
            f"{row['provider_name']:<20} {row['conversations']:>13} {row['messages']:>10}"
            f" {row['attachments']:>11}"
        )
    click.echo("")
    click.echo(f"{'provider':<20} {'month':<8} {'messages':>10}")
    for row in summary["messages_per_month"]:
        click.echo(f"{row['provider_name']:<20} {row['month'] or '-':<8} {row['messages']:>10}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
