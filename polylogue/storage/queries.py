"""The query contract: every named query the binding calls, on every dialect.

It sits beside :mod:`polylogue.storage.sqlfiles`, which loads a dialect's ``.sql`` files
and checks them against it, so that "which queries exist, with which parameters" is
answered where they are loaded. Queries only one dialect needs (connection pragmas,
migration locks) are listed in that backend's ``dialect_queries``.
"""

from __future__ import annotations

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
