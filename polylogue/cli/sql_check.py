"""``polylogue sql check``: every check of the SQL files, one line per finding.

Exits 1 when any finding is an error, so that CI and a pre-commit hook can run it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from polylogue.sqlcheck.findings import Finding, is_failure
from polylogue.sqlcheck.run import DIALECTS, run_checks

_CHECK_ORDER = ("contract", "schema", "migrations", "lint", "parity")


@click.command("check")
@click.option(
    "--dialect",
    "dialects",
    multiple=True,
    type=click.Choice(DIALECTS),
    help="Check only this dialect (repeatable; default: all three).",
)
@click.option(
    "--url",
    default=None,
    help="PostgreSQL server for the postgresql checks (a temporary schema is made and"
    " dropped); default: POLYLOGUE_DATABASE_URL when it is a PostgreSQL URL.",
)
@click.option(
    "--sql-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Check an edited copy of the query files (DIR/<dialect>/*.sql); migrations"
    " always come from the package.",
)
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check_command(
    dialects: tuple[str, ...], url: str | None, sql_dir: Path | None, output: str
) -> None:
    """Check queries against the binding and the schema, and the dialects against each other."""
    findings = run_checks(dialects or DIALECTS, url=url, sql_dir=sql_dir)
    errors = sum(1 for f in findings if is_failure(f))
    warnings = sum(1 for f in findings if f.severity == "warning")
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "findings": [f.to_json() for f in findings],
                    "errors": errors,
                    "warnings": warnings,
                },
                indent=2,
            )
        )
    else:
        _print_text(findings, errors, warnings)
    raise SystemExit(1 if errors else 0)


def _print_text(findings: list[Finding], errors: int, warnings: int) -> None:
    for check in sorted({f.check for f in findings}, key=_CHECK_ORDER.index):
        click.echo(f"== {check}")
        for finding in (f for f in findings if f.check == check):
            click.echo(f"{finding}" + ("" if is_failure(finding) else f" [{finding.severity}]"))
    not_checked = sum(1 for f in findings if f.severity == "not-checked")
    summary = f"{errors} errors, {warnings} warnings"
    if not_checked:
        summary += f", {not_checked} not checked"
    click.echo(summary)
