"""The ``polylogue`` command: migrate, inspect and summarise an archive database.

Every command takes ``--url`` (``sqlite:///path``, ``postgresql://...``, ``duckdb:///path``);
without it, ``POLYLOGUE_DATABASE_URL`` or the default SQLite file is used.

Errors are one line on stderr saying what failed, where and what to do, with exit status
1 (2 for usage errors); never a traceback, whatever failed (a database error, a file the
user may not read, an unexpected error). ``POLYLOGUE_DEBUG=1`` shows the traceback of an
unexpected one.
"""

from __future__ import annotations

import click

from polylogue.cli.archive_export import copy_command, export_command, verify_command
from polylogue.cli.archive_import import import_command
from polylogue.cli.common import DEBUG_ENV, OneLineErrors
from polylogue.cli.schema import migrate, status
from polylogue.cli.sql import sql
from polylogue.cli.stats import stats


@click.group(cls=OneLineErrors)
@click.version_option(package_name="polylogue-storage")
def main() -> None:
    """Storage kit of polylogue: an archive of AI chat conversations."""


main.add_command(migrate)
main.add_command(status)
main.add_command(stats)
main.add_command(import_command)
main.add_command(export_command)
main.add_command(copy_command)
main.add_command(verify_command)
main.add_command(sql)

__all__ = ["DEBUG_ENV", "main"]
