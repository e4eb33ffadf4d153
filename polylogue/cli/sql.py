"""``polylogue sql``: the DBA's commands (check, new-migration, show, explain).

Each subcommand lives in a module of its own and is added to the group here.
"""

from __future__ import annotations

import click

from polylogue.cli.sql_check import check_command
from polylogue.cli.sql_tools import explain, new_migration, show


@click.group("sql")
def sql() -> None:
    """Check and inspect the SQL files (sql/ and migrations/)."""


sql.add_command(new_migration)
sql.add_command(show)
sql.add_command(explain)
sql.add_command(check_command)
