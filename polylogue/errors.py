"""The exceptions callers catch.

Every driver exception (sqlite3, psycopg, duckdb) leaves the library as a subclass of
:class:`DatabaseError` whose message names the operation and the database (never its
password). Record validation errors stay :class:`pydantic.ValidationError`: they are raised
before anything touches a database.
"""

from collections.abc import Mapping, Sequence


class DatabaseError(Exception):
    """Something went wrong talking to the archive database."""


class IntegrityError(DatabaseError):
    """A constraint refused the write (a missing parent row, a NOT NULL column, ...)."""


class MessageOwnershipError(IntegrityError):
    """A message id is stored under one conversation and a write claims it for another.

    A message id belongs to one conversation for good: the write that claims it is refused
    whole (nothing of it is saved) instead of moving or overwriting the owner's message.
    ``message_id``, ``owner`` and ``claimant`` describe the first collision; ``collisions``
    lists every one found, as ``(message_id, owner, claimant)``. ``StorageRepository.
    save_many`` fills ``rejected_bundles`` (``(index in the input, conversation_id)``),
    ``next_bundle`` (the index of the first bundle it did not read) and ``saved`` (the
    counts of what it did save).
    """

    def __init__(
        self,
        collisions: Sequence[tuple[str, str, str]],
        *,
        where: str,
        listed_together: bool = False,
        rejected_bundles: Sequence[tuple[int, str]] = (),
        next_bundle: int | None = None,
        saved: Mapping[str, int] | None = None,
        detail: str = "",
    ) -> None:
        if not collisions:
            raise ValueError("MessageOwnershipError needs at least one collision")
        self.collisions = tuple(collisions)
        self.message_id, self.owner, self.claimant = self.collisions[0]
        self.where = where
        self.listed_together = listed_together
        self.rejected_bundles = tuple(rejected_bundles)
        self.next_bundle = next_bundle
        self.saved = dict(saved) if saved is not None else None
        if listed_together:
            why = (
                f"message {self.message_id!r} is listed under conversation {self.owner!r}"
                f" and under conversation {self.claimant!r} in one batch"
            )
        else:
            why = (
                f"message {self.message_id!r} belongs to conversation {self.owner!r} and"
                f" cannot be saved under conversation {self.claimant!r}"
            )
        more = len(self.collisions) - 1
        if more:
            why += f" ({more} more message id{'s' if more > 1 else ''} like it)"
        super().__init__(
            detail
            or f"{where}: {why}; nothing of that write was saved. A message id belongs to one"
            " conversation for good: give the message an id of its own"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # The keyword-only arguments would be lost by Exception's pickling (errors cross
        # process boundaries in multi-process importers).
        return (
            _rebuild_ownership_error,
            (
                self.collisions,
                self.where,
                self.listed_together,
                self.rejected_bundles,
                self.next_bundle,
                self.saved,
                str(self),
            ),
        )


def _rebuild_ownership_error(
    collisions: Sequence[tuple[str, str, str]],
    where: str,
    listed_together: bool,
    rejected_bundles: Sequence[tuple[int, str]],
    next_bundle: int | None,
    saved: Mapping[str, int] | None,
    detail: str,
) -> MessageOwnershipError:
    return MessageOwnershipError(
        collisions,
        where=where,
        listed_together=listed_together,
        rejected_bundles=rejected_bundles,
        next_bundle=next_bundle,
        saved=saved,
        detail=detail,
    )


class OperationalError(DatabaseError):
    """The database could not run the statement (locked, unreachable, disk full, ...)."""


class TransientError(OperationalError):
    """A conflict with a concurrent transaction (deadlock, serialization failure).

    The database rolled the transaction back; running it again may succeed.
    :class:`~polylogue.storage.repository.StorageRepository` retries its own bundle
    transactions a bounded number of times, so its callers do not see this.
    """


class DatabaseInUseError(OperationalError):
    """Another process holds the database file open for writing."""


class DatabaseNotFoundError(OperationalError):
    """There is no database where a read-only open looked (read commands never create one)."""


class SchemaVersionError(DatabaseError):
    """The database's schema version is not one this code can work with."""


class MigrationError(DatabaseError):
    """A migration script is missing, misnumbered, edited after it was applied, or failed."""


class QuerySetError(DatabaseError):
    """A dialect's SQL files do not define the queries the binding needs."""


class ConfigurationError(DatabaseError):
    """The backend cannot be selected: unknown URL scheme, missing extra, bad option."""


class TransactionError(DatabaseError):
    """A transaction verb was used out of order (commit without begin, ...)."""


__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "DatabaseInUseError",
    "IntegrityError",
    "MessageOwnershipError",
    "MigrationError",
    "OperationalError",
    "QuerySetError",
    "SchemaVersionError",
    "TransactionError",
    "TransientError",
]
