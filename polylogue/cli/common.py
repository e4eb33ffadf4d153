"""What every ``polylogue`` command shares: the ``--url`` option's help, opening a backend
that is closed whatever happens, and the group class that turns every failure into one
line on stderr."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from polylogue.errors import DatabaseError
from polylogue.storage.backends import SQLBackend, create_backend
from polylogue.storage.faults import cleaning_up, describe_os_error, one_line
from polylogue.storage.repository import DEFAULT_BATCH_SIZE

URL_HELP = "Database URL (default: $POLYLOGUE_DATABASE_URL or the default SQLite file)."
DEBUG_ENV = "POLYLOGUE_DEBUG"

batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Bundles (conversations with their messages) written per transaction.",
)
"""``--batch-size`` of the commands that write through ``StorageRepository.save_many``."""


class OneLineErrors(click.Group):
    """Every failure of a command becomes one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DatabaseError as exc:
            message = one_line(str(exc))
        except OSError as exc:
            message = (
                f"{describe_os_error(exc)}; check that this user may read and write the"
                " database and its folder"
            )
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            message = (
                f"unexpected {type(exc).__name__}: {one_line(str(exc))} (a bug: please report"
                f" it; {DEBUG_ENV}=1 shows the traceback)"
            )
        # Raised outside the except blocks: nothing chains to the original exception.
        raise click.ClickException(message)


@contextmanager
def opened_backend(
    url: str | None, *, migrate: bool, read_only: bool = False, current: bool = True
) -> Iterator[SQLBackend]:
    """The backend ``url`` names, closed whatever happens.

    ``read_only`` is for commands that only read: the database must exist (it is never
    created and never migrated; SQLite and DuckDB files are opened read-only), and with
    ``current`` one that needs migrating is refused with the command to run.
    """
    backend = create_backend(url=url, migrate=migrate and not read_only, read_only=read_only)
    try:
        if read_only and current:
            backend.check_schema_current()
        yield backend
    except BaseException as exc:
        with cleaning_up(exc, "closing the database"):
            backend.close()
        raise
    backend.close()
