"""The ``polylogue`` command: migrate, inspect and summarise an archive database.

Every command takes ``--url`` (``sqlite:///path``, ``postgresql://...``, ``duckdb:///path``);
without it, ``POLYLOGUE_DATABASE_URL`` or the default SQLite file is used. Errors go to
stderr with exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from polylogue.errors import DatabaseError
from polylogue.storage.backends import SQLBackend, create_backend

URL_HELP = "Database URL (default: $POLYLOGUE_DATABASE_URL or the default SQLite file)."


@contextmanager
def _backend(url: str | None, *, migrate: bool) -> Iterator[SQLBackend]:
    try:
        backend = create_backend(url=url, migrate=migrate)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield backend
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        backend.close()


@click.group()
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
def migrate(url: str | None, dry_run: bool, allow_changed: bool) -> None:
    """Apply pending schema migrations."""
    with _backend(url, migrate=False) as backend:
        runner = backend.migration_runner()
        scripts = runner.migrate(dry_run=dry_run, allow_changed=allow_changed)
        where = backend.describe()
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
