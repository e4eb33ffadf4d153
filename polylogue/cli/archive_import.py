"""``polylogue import``: load bundle files (JSON Lines, optionally gzip) into any backend.

The work is done by :func:`polylogue.archive.importer.import_archives`; this module
checks the inputs before the database is touched, draws the progress bar only for a
person at a terminal, and turns the summary into text or JSON and an exit status
(1 when a line was rejected or the import stopped early, so scripts notice).
"""

from __future__ import annotations

import json
import sys
from typing import Literal

import click

from polylogue.archive.files import STDIO
from polylogue.archive.importer import ImportSummary, display_name, import_archives
from polylogue.cli.common import URL_HELP, batch_size_option, opened_backend
from polylogue.storage.faults import describe_os_error
from polylogue.storage.repository import StorageRepository

MAX_REJECTIONS_SHOWN = 20
"""Rejected lines listed on stderr; the rest are counted (``--json`` lists them all)."""


@click.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--url", default=None, help=URL_HELP)
@batch_size_option
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="On a bad line: stop (its batch is not written) or skip it and go on.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
def import_command(
    files: tuple[str, ...],
    url: str | None,
    batch_size: int,
    on_error: Literal["stop", "skip"],
    as_json: bool,
    quiet: bool,
) -> None:
    """Import bundle files (FILE may be - for standard input, and gzip-compressed).

    Re-importing a file is safe: what is already stored is reported as skipped.
    """
    for path in files:
        _check_readable(path)
    progress = not quiet and not as_json and sys.stderr.isatty()
    with opened_backend(url, migrate=True) as backend:
        try:
            summary = import_archives(
                StorageRepository(backend),
                files,
                batch_size=batch_size,
                on_error=on_error,
                progress=progress,
            )
        except OSError as exc:
            # An input file failed mid-way (a truncated gzip, a read error): not the
            # database, so the generic hint about its folder would mislead.
            reason = describe_os_error(exc) if exc.strerror else str(exc)
            raise click.ClickException(
                f"{reason}; the batches before it were saved, and running the import again is safe"
            ) from None
    if as_json:
        click.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    elif not quiet:
        click.echo(_text(summary))
    _report_problems(summary)
    if summary.rejected or summary.stopped_at is not None:
        raise click.exceptions.Exit(1)


def _check_readable(path: str) -> None:
    """Refuse a missing or unreadable input before a database is created or migrated."""
    if path == STDIO:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _counts(counts: dict[str, int]) -> str:
    return (
        f"{_plural(counts['conversations'], 'conversation')},"
        f" {_plural(counts['messages'], 'message')},"
        f" {_plural(counts['attachments'], 'attachment')}"
    )


def _text(summary: ImportSummary) -> str:
    """``imported 2 files: inserted ...; skipped ...; 1 run; 1 line rejected``."""
    rejected = len(summary.rejected)
    verb = "stopped after" if summary.stopped_at is not None else "imported"
    return (
        f"{verb} {_plural(summary.files, 'file')}: inserted {_counts(summary.inserted)};"
        f" skipped {_counts(summary.skipped)}; {_plural(summary.runs, 'run')};"
        f" {_plural(rejected, 'line')} rejected"
    )


def _report_problems(summary: ImportSummary) -> None:
    for item in summary.rejected[:MAX_REJECTIONS_SHOWN]:
        click.echo(f"{display_name(item['file'])}:{item['line']}: {item['error']}", err=True)
    hidden = len(summary.rejected) - MAX_REJECTIONS_SHOWN
    if hidden > 0:
        click.echo(f"... and {hidden:,} more", err=True)
    if summary.stop_note is not None:
        click.echo(summary.stop_note, err=True)


__all__ = ["import_command"]
