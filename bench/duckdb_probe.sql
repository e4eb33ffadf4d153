-- sqlfluff:dialect:duckdb
-- Alternative DuckDB write paths measured by bench/duckdb_probe.py (not used by polylogue).

-- name: insert_messages_from_json(rows_file)!
-- insert_messages (sql/duckdb/messages.sql) fed by a temporary JSON file holding an array
-- of row objects, instead of one list parameter per column.
INSERT INTO messages (
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
)
SELECT
    r.message_id,
    r.conversation_id,
    r.provider_message_id,
    r.role,
    r.text,
    r.timestamp,
    r.content_hash,
    r.provider_meta,
    r.version
FROM read_json(
    :rows_file,
    format = 'array',
    columns = {
        message_id: 'VARCHAR',
        conversation_id: 'VARCHAR',
        provider_message_id: 'VARCHAR',
        role: 'VARCHAR',
        text: 'VARCHAR',
        timestamp: 'VARCHAR',
        content_hash: 'VARCHAR',
        provider_meta: 'VARCHAR',
        version: 'INTEGER'
    }
) AS r;

-- name: upsert_message_row(message_id, conversation_id, provider_message_id, role, text, timestamp, content_hash, provider_meta, version)*!
-- One row per execution: the executemany reference of the benchmark (bench/references.py).
INSERT INTO messages (
    message_id,
    conversation_id,
    provider_message_id,
    role,
    text,
    timestamp,
    content_hash,
    provider_meta,
    version
)
VALUES (
    :message_id,
    :conversation_id,
    :provider_message_id,
    :role,
    :text,
    :timestamp,
    :content_hash,
    :provider_meta,
    :version
)
ON CONFLICT (message_id) DO UPDATE SET
    text = excluded.text,
    content_hash = excluded.content_hash;
