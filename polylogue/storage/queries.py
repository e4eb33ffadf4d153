"""The query contract: every named query the binding calls, on every dialect.

It sits beside :mod:`polylogue.storage.sqlfiles`, which loads a dialect's ``.sql`` files
and checks them against it, so that "which queries exist, with which parameters" is
answered where they are loaded. Queries only one dialect needs (connection pragmas,
migration locks) are listed in that backend's ``dialect_queries``.
"""

from __future__ import annotations

from collections.abc import Collection

from polylogue.storage.sqlfiles import QuerySpec

CONVERSATION_COLUMNS = (
    "conversation_id",
    "provider_name",
    "provider_conversation_id",
    "title",
    "created_at",
    "updated_at",
    "content_hash",
    "provider_meta",
    "version",
)
MESSAGE_COLUMNS = (
    "message_id",
    "conversation_id",
    "provider_message_id",
    "role",
    "text",
    "timestamp",
    "content_hash",
    "provider_meta",
    "version",
)
MESSAGE_UPDATE_COLUMNS = (
    "message_id",
    "conversation_id",
    "role",
    "text",
    "timestamp",
    "content_hash",
    "provider_meta",
)
"""What ``update_changed_messages`` may change (never provider ids nor the version)."""
CONVERSATION_UPDATE_COLUMNS = ("title", "created_at", "updated_at", "content_hash", "provider_meta")
"""What ``upsert_conversations`` changes in a stored conversation."""
ATTACHMENT_MERGE_COLUMNS = ("mime_type", "size_bytes", "path", "provider_meta")
"""What ``upsert_attachments`` changes in a stored attachment, each only where the saved
value is not NULL."""

QUERIES: dict[str, QuerySpec] = {
    # conversations.sql
    "upsert_conversations": QuerySpec("conversations.sql", CONVERSATION_COLUMNS, "!", bulk=True),
    "get_conversation": QuerySpec("conversations.sql", ("conversation_id",), "^"),
    "list_conversations": QuerySpec(
        "conversations.sql", ("source", "provider", "max_rows", "skip_rows")
    ),
    "list_conversations_by_id": QuerySpec(
        "conversations.sql", ("after_id", "provider", "since", "max_rows")
    ),
    "delete_conversation": QuerySpec("conversations.sql", ("conversation_id",), "!"),
    # messages.sql
    "upsert_messages": QuerySpec("messages.sql", MESSAGE_COLUMNS, "*!", bulk=True, returning=True),
    "get_messages": QuerySpec("messages.sql", ("conversation_id",)),
    "list_messages_in_id_range": QuerySpec("messages.sql", ("after_id", "last_id")),
    "delete_conversation_messages": QuerySpec("messages.sql", ("conversation_id",), "!"),
    # attachments.sql
    "upsert_attachments": QuerySpec(
        "attachments.sql",
        ("attachment_id", "mime_type", "size_bytes", "path", "provider_meta"),
        "*!",
        bulk=True,
    ),
    "insert_attachment_refs": QuerySpec(
        "attachments.sql",
        ("ref_id", "attachment_id", "conversation_id", "message_id", "provider_meta"),
        "*!",
        bulk=True,
    ),
    "refresh_ref_counts": QuerySpec("attachments.sql", ("attachment_id",), "*!", bulk=True),
    "get_attachments": QuerySpec("attachments.sql", ("conversation_id",)),
    "list_attachments_in_id_range": QuerySpec("attachments.sql", ("after_id", "last_id")),
    "prune_attachment_refs": QuerySpec("attachments.sql", ("conversation_id", "keep_ref_ids")),
    "delete_unreferenced_attachments": QuerySpec(
        "attachments.sql", ("attachment_id",), "*!", bulk=True
    ),
    # runs.sql
    "record_run": QuerySpec(
        "runs.sql",
        (
            "run_id",
            "timestamp",
            "plan_snapshot",
            "counts_json",
            "drift_json",
            "is_indexed",
            "duration_ms",
        ),
        "!",
    ),
    "get_runs": QuerySpec("runs.sql", ("max_rows",)),
    # stats.sql
    "provider_counts": QuerySpec("stats.sql"),
    "messages_per_month": QuerySpec("stats.sql"),
    "count_rows": QuerySpec("stats.sql", (), "^"),
    "analyze_tables": QuerySpec("stats.sql", (), "#"),
    # schema_migrations.sql (the migration runner's bookkeeping)
    "create_schema_migrations": QuerySpec("schema_migrations.sql", (), "!"),
    "schema_migrations_exists": QuerySpec("schema_migrations.sql", (), "$"),
    "get_applied_migrations": QuerySpec("schema_migrations.sql"),
    "record_migration": QuerySpec(
        "schema_migrations.sql", ("version", "name", "checksum", "applied_at"), "!"
    ),
}
"""Every query the binding calls, on every dialect: name -> file, parameters, operation."""

LIST_QUERIES: dict[str, QuerySpec] = {
    "prune_attachment_refs_many": QuerySpec(
        "attachments.sql", ("conversation_id", "keep_conversation_id", "keep_ref_id")
    ),
}
"""Queries of dialects that bind a list to a parameter (``binds_lists``), run for several
conversations at once. SQLite binds no lists and cannot take the conversation ids as one
JSON array (its JSON functions stop at U+0000, which conversation ids may hold; ref ids are
hex digests and travel as JSON safely), and a DELETE ... RETURNING cannot be a row-wise
``*!``: it prunes one conversation per ``prune_attachment_refs``, which costs microseconds
there."""

ROW_LOCK_QUERIES: dict[str, QuerySpec] = {
    "lock_attachments": QuerySpec("attachments.sql", ("attachment_id",)),
    "lock_conversation": QuerySpec("conversations.sql", ("conversation_id",), "$"),
}
"""Queries of dialects whose writers run concurrently and lock rows (``row_locks``).
SQLite and DuckDB serialise whole write transactions, so there is nothing to order and a
no-op statement would only cost time (milliseconds a statement on DuckDB)."""

SPLIT_UPSERT_QUERIES: dict[str, QuerySpec] = {
    "classify_messages": QuerySpec("messages.sql", ("message_id", "conversation_id")),
    "insert_messages": QuerySpec("messages.sql", MESSAGE_COLUMNS, "!", bulk=True),
    "update_changed_messages": QuerySpec("messages.sql", MESSAGE_UPDATE_COLUMNS, "!", bulk=True),
}
"""Queries of dialects that write a large message batch in three statements
(``split_upsert_rows``: DuckDB, whose ON CONFLICT costs more than classifying first; see
``sql/duckdb/messages.sql``). SQLite's row-wise upsert and PostgreSQL's one columnar
statement are already their fastest forms, so they do not define these."""

ATTACHMENT_COLUMNS = (
    "attachment_id",
    "conversation_id",
    "message_id",
    "mime_type",
    "size_bytes",
    "path",
    "provider_meta",
)
RUN_COLUMNS = (
    "run_id",
    "timestamp",
    "plan_snapshot",
    "counts_json",
    "drift_json",
    "indexed",
    "duration_ms",
)
PRUNED_REF_COLUMNS = ("ref_id", "attachment_id")

RESULT_COLUMNS: dict[str, tuple[str, ...]] = {
    # rows.conversation_from_row
    "get_conversation": CONVERSATION_COLUMNS,
    "list_conversations": CONVERSATION_COLUMNS,
    "list_conversations_by_id": CONVERSATION_COLUMNS,
    # rows.message_from_row
    "get_messages": MESSAGE_COLUMNS,
    "list_messages_in_id_range": MESSAGE_COLUMNS,
    # rows.attachment_from_row
    "get_attachments": ATTACHMENT_COLUMNS,
    "list_attachments_in_id_range": ATTACHMENT_COLUMNS,
    # rows.run_from_row
    "get_runs": RUN_COLUMNS,
    # backends.writes: the refs a prune deleted, for refresh_ref_counts
    "prune_attachment_refs": PRUNED_REF_COLUMNS,
    "prune_attachment_refs_many": PRUNED_REF_COLUMNS,
    # migration_scripts.AppliedMigration.of
    "get_applied_migrations": ("version", "name", "checksum", "applied_at"),
    # SQLBackend.count_rows: the tables counted, in the order reports list them
    "count_rows": ("conversations", "messages", "attachments", "attachment_refs", "runs"),
}
"""The result columns the binding reads by name, per query that returns rows: a query
that renames one breaks the binding with a KeyError at run time, so ``polylogue sql
check`` compares these with what each query returns (tests/sqlcheck checks that the
readers in :mod:`polylogue.storage.rows` read exactly these keys)."""

_PRUNE_ONE = (
    "prune_attachment_refs",
    "lock_attachments",
    "refresh_ref_counts",
    "delete_unreferenced_attachments",
)
"""The prune of one conversation; several use ``prune_attachment_refs_many`` where bound."""
_PRUNE = ("prune_attachment_refs", "prune_attachment_refs_many", *_PRUNE_ONE[1:])
_SAVE_ATTACHMENTS = ("upsert_attachments", "insert_attachment_refs", "refresh_ref_counts")
_SAVE_MESSAGES = (
    "upsert_messages",
    "get_message_owner",
    "classify_messages",
    "insert_messages",
    "update_changed_messages",
)
_REPLACE_ATTACHMENTS = (
    "prune_attachment_refs",
    "prune_attachment_refs_many",
    "upsert_attachments",
    "insert_attachment_refs",
    "lock_attachments",
    "refresh_ref_counts",
    "delete_unreferenced_attachments",
)

METHOD_QUERIES: dict[str, tuple[str, ...]] = {
    "get_conversation": ("get_conversation",),
    "list_conversations": ("list_conversations",),
    "list_conversations_by_id": ("list_conversations_by_id",),
    "save_conversation": ("upsert_conversations",),
    "save_conversations": ("upsert_conversations",),
    "get_messages": ("get_messages",),
    "list_messages_in_id_range": ("list_messages_in_id_range",),
    "save_messages": _SAVE_MESSAGES,
    "get_attachments": ("get_attachments",),
    "list_attachments_in_id_range": ("list_attachments_in_id_range",),
    "save_attachments": _SAVE_ATTACHMENTS,
    "save_attachments_counted": _SAVE_ATTACHMENTS,
    "replace_attachments": _REPLACE_ATTACHMENTS,
    "save_bundles": ("upsert_conversations", *_SAVE_MESSAGES, *_REPLACE_ATTACHMENTS),
    "prune_attachments": _PRUNE_ONE,
    "prune_attachments_many": _PRUNE,
    "delete_conversation": (
        "lock_conversation",
        "delete_conversation_messages",
        *_PRUNE_ONE,
        "delete_conversation",
    ),
    "record_run": ("record_run",),
    "get_runs": ("get_runs",),
    "stats": ("provider_counts", "messages_per_month"),
    "count_rows": ("count_rows",),
    "analyze": ("analyze_tables",),
}
"""Protocol method -> the queries it may run, in the order it runs them, on any dialect.

A dialect runs those of them it defines (:func:`method_queries`): its capabilities decide
(``binds_lists``, ``row_locks``, ``split_upsert_rows``, and its ``dialect_queries`` such as
SQLite's ``get_message_owner``), so the one list serves every dialect. Which of them run
on a given call depends on the data (see each method's docstring in
:mod:`polylogue.storage.backends.base`); ``polylogue sql show METHOD`` prints them."""


def method_queries(method: str, defined: Collection[str]) -> tuple[str, ...]:
    """The queries ``method`` may run on a dialect whose query set is ``defined``
    (``Backend.expected_queries()``); KeyError for a name that is no protocol method."""
    return tuple(name for name in METHOD_QUERIES[method] if name in defined)
