"""``polylogue migrate`` and ``polylogue status``: the schema history of an archive."""

from __future__ import annotations

import click

from polylogue.cli.common import URL_HELP, opened_backend


@click.command()
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
    with opened_backend(url, migrate=False) as backend:
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


@click.command()
@click.option("--url", default=None, help=URL_HELP)
def status(url: str | None) -> None:
    """Show schema version, applied and pending migrations, and edited scripts.

    Reads only: a database that does not exist is reported, never created.
    """
    with opened_backend(url, migrate=False, read_only=True, current=False) as backend:
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
