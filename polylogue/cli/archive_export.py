"""``polylogue export``, ``copy`` and ``verify``: archives out of a database, between two
databases, and compared across two.

The work is done in :mod:`polylogue.archive` (``exporter``, ``copier``, ``verify``); this
module opens the databases the safe way (a source is only ever opened read-only, so a
typo in a URL never creates or migrates a database), draws a progress bar for a person
at a terminal, and turns the results into text and an exit status that scripts can use
(``verify``: 0 identical, 1 different).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from polylogue.archive.copier import copy_archive
from polylogue.archive.exporter import ExportSummary, write_archive
from polylogue.archive.files import STDIO, open_archive_output
from polylogue.archive.verify import DEFAULT_SHOWN, IdList, VerifyReport, compare_archives
from polylogue.cli.common import URL_HELP, batch_size_option, opened_backend
from polylogue.storage.backends.config import parse_url
from polylogue.storage.faults import describe_os_error
from polylogue.storage.repository import StorageRepository

REDRAW_SECONDS = 0.1


class _Bar:
    """``export  42%  1,234/2,900 conversations  310/s  ETA 0:05`` on stderr.

    Drawn only on a terminal (never into a log or a pipe), at most ten times a second.
    """

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self._on = enabled and sys.stderr.isatty()
        self._label = label
        self._total = total
        self._start = time.monotonic()
        self._next = self._start
        self._drawn = False

    def update(self, done: int) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + REDRAW_SECONDS
        rate = done / max(now - self._start, 1e-9)
        parts = [self._label]
        if self._total:
            parts.append(f"{min(done / self._total, 1.0):4.0%}")
            parts.append(f"{done:,}/{self._total:,} conversations")
        else:
            parts.append(f"{done:,} conversations")
        parts.append(f"{rate:,.0f}/s")
        if self._total and rate > 0:
            left = int(max(self._total - done, 0) / rate + 0.5)
            parts.append(f"ETA {left // 60}:{left % 60:02d}")
        sys.stderr.write("\r" + "  ".join(parts) + "\x1b[K")
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._drawn = False


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _check_since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An ISO-8601 date or time, kept as typed: ``updated_at`` is compared as text, so a
    typo would silently select nothing."""
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 date or time (like 2024-05-01 or 2024-05-01T08:00:00Z)"
        ) from None
    return value


# --- export ----------------------------------------------------------------------------


@click.command("export")
@click.option("--url", default=None, help=URL_HELP)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Write to FILE (compressed when it ends in .gz); - or none: standard output.",
)
@click.option("--provider", default=None, help="Only the conversations of this provider.")
@click.option(
    "--since",
    default=None,
    metavar="DATE",
    callback=_check_since,
    help="Only the conversations updated at or after DATE (ISO 8601).",
)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
def export_command(
    url: str | None,
    output: str | None,
    provider: str | None,
    since: str | None,
    quiet: bool,
) -> None:
    """Write the archive as a bundle file (JSON Lines; see docs/archive-format.md).

    Reads only: the database must exist and is never created or migrated. Import runs
    are written only for a whole archive (not with --provider or --since).
    """
    to_stdout = output is None or output == STDIO
    # The database is opened first: a missing one must not leave an empty output file.
    with opened_backend(url, migrate=False, read_only=True) as backend:
        whole = provider is None and since is None
        total = backend.count_rows()["conversations"] if whole and not quiet else None
        bar = _Bar("export", total, enabled=not quiet)
        try:
            with open_archive_output(output) as out:
                summary = write_archive(
                    backend,
                    out,
                    provider=provider,
                    since=since,
                    progress=lambda s: bar.update(s.conversations),
                )
        except OSError as exc:
            raise click.ClickException(
                f"{describe_os_error(exc)}; nothing was written to {output}"
                if not to_stdout
                else f"cannot write to standard output: {describe_os_error(exc)}"
            ) from None
        finally:
            bar.close()
    if not quiet:
        where = "standard output" if to_stdout else output
        click.echo(f"exported {_export_counts(summary)} to {where}", err=to_stdout)


def _export_counts(summary: ExportSummary) -> str:
    return (
        f"{_plural(summary.conversations, 'conversation')},"
        f" {_plural(summary.messages, 'message')},"
        f" {_plural(summary.attachments, 'attachment')},"
        f" {_plural(summary.runs, 'run')} ({summary.bytes:,} bytes)"
    )


# --- copy ------------------------------------------------------------------------------


def _database_key(url: str) -> tuple[str, ...]:
    """What tells databases apart: the resolved file, or the server URL and schema."""
    config = parse_url(url)
    if config.backend_type == "postgresql":
        return ("postgresql", config.url or "", config.schema_name)
    path = str(config.db_path)
    return ("file", path if path == ":memory:" else str(Path(path).expanduser().resolve()))


@click.command("copy")
@click.argument("src_url")
@click.argument("dst_url")
@batch_size_option
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--no-verify", is_flag=True, help="Do not compare the two archives afterwards.")
def copy_command(src_url: str, dst_url: str, batch_size: int, quiet: bool, no_verify: bool) -> None:
    """Copy the archive at SRC_URL into DST_URL (created or migrated as needed).

    Any backend to any backend. Safe to run again after an interruption: what is
    already there is skipped. Nothing is deleted from DST_URL. Afterwards both archives
    are compared (exit status 1 when they differ) unless --no-verify.
    """
    if _database_key(src_url) == _database_key(dst_url):
        raise click.ClickException(
            "SRC_URL and DST_URL name the same database; copy needs two different ones"
        )
    with (
        opened_backend(src_url, migrate=False, read_only=True) as source,
        opened_backend(dst_url, migrate=True) as target,
    ):
        total = source.count_rows()["conversations"] if not quiet else None
        bar = _Bar("copy", total, enabled=not quiet)
        try:
            summary = copy_archive(
                source, StorageRepository(target), batch_size=batch_size, progress=bar.update
            )
        finally:
            bar.close()
        if not quiet:
            counts = summary.counts
            click.echo(
                f"copied {_plural(summary.bundles_read, 'conversation')}"
                f" and {_plural(summary.runs, 'run')}:"
                f" inserted {_plural(counts['conversations'], 'conversation')},"
                f" {_plural(counts['messages'], 'message')},"
                f" {_plural(counts['attachments'], 'attachment')};"
                f" skipped {_plural(counts['skipped_conversations'], 'conversation')},"
                f" {_plural(counts['skipped_messages'], 'message')},"
                f" {_plural(counts['skipped_attachments'], 'attachment')}"
            )
        if no_verify:
            return
        bar = _Bar("verify", total, enabled=not quiet)
        try:
            report = compare_archives(source, target, progress=bar.update)
        finally:
            bar.close()
    if not report.identical:
        click.echo("the copy differs from the source (A: source, B: target):", err=True)
        for line in _differences(report):
            click.echo(f"  {line}", err=True)
        raise click.exceptions.Exit(1)
    if not quiet:
        click.echo("verified: the copy is identical to the source")


# --- verify ----------------------------------------------------------------------------


@click.command("verify")
@click.argument("url_a")
@click.argument("url_b")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--show",
    type=click.IntRange(min=0),
    default=DEFAULT_SHOWN,
    show_default=True,
    help="Conversation ids listed for each kind of difference.",
)
def verify_command(url_a: str, url_b: str, as_json: bool, show: int) -> None:
    """Compare the archives at URL_A and URL_B, row counts and content.

    Reads only. Exit status 0 when they are identical (they would export to the same
    file), 1 when they differ.
    """
    with (
        opened_backend(url_a, migrate=False, read_only=True) as backend_a,
        opened_backend(url_b, migrate=False, read_only=True) as backend_b,
    ):
        where_a, where_b = backend_a.describe(), backend_b.describe()
        report = compare_archives(backend_a, backend_b, show=show)
    if as_json:
        click.echo(json.dumps({"a": where_a, "b": where_b, **report.to_json()}, ensure_ascii=False))
    else:
        click.echo(f"A: {where_a}")
        click.echo(f"B: {where_b}")
        click.echo(_counts_table(report))
        if report.identical:
            click.echo("identical")
        else:
            click.echo("different:")
            for line in _differences(report):
                click.echo(f"  {line}")
    if not report.identical:
        raise click.exceptions.Exit(1)


def _counts_table(report: VerifyReport) -> str:
    tables = list(report.counts_a) + [t for t in report.counts_b if t not in report.counts_a]

    def cell(counts: dict[str, int], table: str) -> str:
        return f"{counts[table]:,}" if table in counts else "-"

    cells = [(t, cell(report.counts_a, t), cell(report.counts_b, t)) for t in tables]
    width = max([len("table"), *(len(t) for t, _a, _b in cells)])
    wide_a = max([1, *(len(a) for _t, a, _b in cells)])
    wide_b = max([1, *(len(b) for _t, _a, b in cells)])
    lines = [f"{'table':<{width}}  {'A':>{wide_a}}  {'B':>{wide_b}}"]
    lines += [
        f"{t:<{width}}  {a:>{wide_a}}  {b:>{wide_b}}" + ("  *" if a != b else "")
        for t, a, b in cells
    ]
    return "\n".join(lines)


def _differences(report: VerifyReport) -> list[str]:
    """One line per kind of difference, naming the first conversations of each."""
    lines = [
        f"{table}: {'-' if a is None else f'{a:,}'} on A, {'-' if b is None else f'{b:,}'} on B"
        for table, a, b in report.count_differences
    ]
    for found, what in (
        (report.only_a, "only on A"),
        (report.only_b, "only on B"),
        (report.different, "with other content"),
    ):
        if found.count:
            lines.append(f"{_plural(found.count, 'conversation')} {what}: {_ids(found)}")
    if not report.runs_identical:
        lines.append("the runs differ")
    if not lines:  # digests differ but nothing above says where: should not happen
        lines.append(f"archive digests differ: {report.digest_a} on A, {report.digest_b} on B")
    return lines


def _ids(found: IdList) -> str:
    shown = ", ".join(found.ids)
    hidden = found.count - len(found.ids)
    return f"{shown}, and {hidden:,} more" if hidden and shown else (shown or "(not listed)")


__all__ = ["copy_command", "export_command", "verify_command"]
