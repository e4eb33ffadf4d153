"""The exceptions callers catch.

Every driver exception (sqlite3, psycopg, duckdb) leaves the library as a subclass of
:class:`DatabaseError` whose message names the operation and the database (never its
password). Record validation errors stay :class:`pydantic.ValidationError`: they are raised
before anything touches a database.
"""


class DatabaseError(Exception):
    """Something went wrong talking to the archive database."""


class IntegrityError(DatabaseError):
    """A constraint refused the write (a missing parent row, a NOT NULL column, ...)."""


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
    "MigrationError",
    "OperationalError",
    "QuerySetError",
    "SchemaVersionError",
    "TransactionError",
    "TransientError",
]
