"""``polylogue stats``: what an archive holds, per provider."""

from __future__ import annotations

import json

import click

from polylogue.cli.common import URL_HELP, opened_backend


@click.command()
@click.option("--url", default=None, help=URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def stats(url: str | None, as_json: bool) -> None:
    """Counts per provider and messages per provider per month."""
    with opened_backend(url, migrate=True) as backend:
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
