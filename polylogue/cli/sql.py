"""``polylogue sql``: the DBA's commands (check, new-migration, show, explain).

Each subcommand lives in a module of its own and is added to the group here.
"""

from __future__ import annotations

import click


@click.group("sql")
def sql() -> None:
    """Check and inspect the SQL files (sql/ and migrations/)."""
