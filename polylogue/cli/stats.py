"""``polylogue stats``: what an archive holds, per provider."""

from __future__ import annotations

import json
from typing import Any

import click

from polylogue.cli.common import URL_HELP, opened_backend

_COLUMNS = (
    ("provider", "provider_name", "<"),
    ("conversations", "conversations", ">"),
    ("messages", "messages", ">"),
    ("attachments", "attachments", ">"),
    ("text", "text_chars", ">"),
    ("first message", "first_message_at", "<"),
    ("last message", "last_message_at", "<"),
)


@click.command()
@click.option("--url", default=None, help=URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def stats(url: str | None, as_json: bool) -> None:
    """Conversations, messages, attachments, text size and date range per provider.

    Reads only: a database that does not exist, or that needs migrating, is reported
    and left as it is.
    """
    with opened_backend(url, migrate=False, read_only=True) as backend:
        summary = backend.stats()
        where = backend.describe()
    providers = summary["providers"]
    summary["totals"] = _totals(providers)
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    click.echo(f"archive: {where}")
    table = [_cells(row) for row in [*providers, {**summary["totals"], "provider_name": "total"}]]
    widths = [
        max(len(title), *(len(cells[i]) for cells in table))
        for i, (title, _key, _align) in enumerate(_COLUMNS)
    ]
    click.echo(_line([title for title, _k, _a in _COLUMNS], widths))
    for cells in table[:-1]:
        click.echo(_line(cells, widths))
    click.echo(_line(["-" * w for w in widths], widths))
    click.echo(_line(table[-1], widths))
    if summary["messages_per_month"]:
        click.echo("")
        click.echo(f"{'provider':<20} {'month':<8} {'messages':>10}")
        for row in summary["messages_per_month"]:
            click.echo(
                f"{row['provider_name']:<20} {row['month'] or '-':<8} {row['messages']:>10,}"
            )


def _totals(providers: list[dict[str, Any]]) -> dict[str, Any]:
    firsts = [p["first_message_at"] for p in providers if p["first_message_at"] is not None]
    lasts = [p["last_message_at"] for p in providers if p["last_message_at"] is not None]
    return {
        **{key: sum(p[key] for p in providers) for key in _SUMMED},
        "first_message_at": min(firsts, default=None),
        "last_message_at": max(lasts, default=None),
    }


_SUMMED = ("conversations", "messages", "attachments", "text_chars")


def _cells(row: dict[str, Any]) -> list[str]:
    cells = []
    for _title, key, _align in _COLUMNS:
        value = row.get(key)
        if key == "text_chars":
            cells.append(_chars(int(value or 0)))
        elif isinstance(value, int):
            cells.append(f"{value:,}")
        else:
            cells.append("-" if value is None else str(value))
    return cells


def _chars(count: int) -> str:
    """Characters of text, in the unit that keeps the number short."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= size:
            return f"{count / size:.1f}{unit} chars"
    return f"{count} chars"


def _line(cells: list[str], widths: list[int]) -> str:
    parts = [
        f"{cell:{align}{width}}"
        for cell, width, (_t, _k, align) in zip(cells, widths, _COLUMNS, strict=True)
    ]
    return "  ".join(parts).rstrip()
