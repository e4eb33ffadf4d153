-- Attachments: shared attachment rows, per-conversation refs, ref counting and pruning.
-- Bulk queries take one list per column (DuckDB binds Python lists as LISTs, U+0000
-- included); keep_ref_ids is one JSON array (text), as on every dialect.
-- There are no foreign keys (see the baseline migration): insert_attachment_refs checks
-- the rows a ref points to and fails with "foreign key violation: ..." instead.

-- name: upsert_attachments(attachment_id, mime_type, size_bytes, path, provider_meta)!
-- Insert a batch of attachment rows, or fill in what changed; an incoming NULL never
-- erases a known value. Several rows for one attachment merge as if applied in order:
-- each column takes the last non-NULL value of the batch.
INSERT INTO attachments (
    attachment_id, mime_type, size_bytes, path, ref_count, provider_meta
)
SELECT
    batch.attachment_id,
    arg_max(batch.mime_type, batch.position) AS mime_type,
    arg_max(batch.size_bytes, batch.position) AS size_bytes,
    arg_max(batch.path, batch.position) AS path,
    0 AS ref_count,
    arg_max(batch.provider_meta, batch.position) AS provider_meta
FROM (
    SELECT
        unnest(cast(:attachment_id AS VARCHAR[])) AS attachment_id,
        unnest(cast(:mime_type AS VARCHAR[])) AS mime_type,
        unnest(cast(:size_bytes AS BIGINT[])) AS size_bytes,
        unnest(cast(:path AS VARCHAR[])) AS path,
        unnest(cast(:provider_meta AS VARCHAR[])) AS provider_meta,
        generate_subscripts(:attachment_id, 1) AS position
) AS batch
GROUP BY batch.attachment_id
ON CONFLICT (attachment_id) DO UPDATE SET
    mime_type = coalesce(excluded.mime_type, attachments.mime_type),
    size_bytes = coalesce(excluded.size_bytes, attachments.size_bytes),
    path = coalesce(excluded.path, attachments.path),
    provider_meta = coalesce(excluded.provider_meta, attachments.provider_meta)
WHERE (
    attachments.mime_type
    IS DISTINCT FROM coalesce(excluded.mime_type, attachments.mime_type)
    OR attachments.size_bytes
    IS DISTINCT FROM coalesce(excluded.size_bytes, attachments.size_bytes)
    OR attachments.path IS DISTINCT FROM coalesce(excluded.path, attachments.path)
    OR attachments.provider_meta
    IS DISTINCT FROM coalesce(excluded.provider_meta, attachments.provider_meta)
);

-- name: insert_attachment_refs(ref_id, attachment_id, conversation_id, message_id, provider_meta)!
-- Insert the refs of a batch that are new (a ref repeated in the batch counts once); the
-- row count is the number of new refs. Fails whole if a ref's attachment, conversation or
-- (non-NULL) message does not exist.
INSERT INTO attachment_refs (
    ref_id, attachment_id, conversation_id, message_id, provider_meta
)
SELECT
    batch.ref_id,
    batch.attachment_id,
    batch.conversation_id,
    batch.message_id,
    batch.provider_meta
FROM (
    SELECT
        unnest(cast(:ref_id AS VARCHAR[])) AS ref_id,
        unnest(cast(:attachment_id AS VARCHAR[])) AS attachment_id,
        unnest(cast(:conversation_id AS VARCHAR[])) AS conversation_id,
        unnest(cast(:message_id AS VARCHAR[])) AS message_id,
        unnest(cast(:provider_meta AS VARCHAR[])) AS provider_meta,
        generate_subscripts(:ref_id, 1) AS position
) AS batch
WHERE
    coalesce((
        SELECT error(problem.what)
        FROM (
            SELECT
                format(
                    'foreign key violation: ref {} refers to attachment {}, which does not exist',
                    r.ref_id,
                    r.attachment_id
                ) AS what
            FROM (
                SELECT
                    unnest(cast(:ref_id AS VARCHAR[])) AS ref_id,
                    unnest(cast(:attachment_id AS VARCHAR[])) AS attachment_id
            ) AS r
            WHERE
                NOT EXISTS (
                    SELECT 1 FROM attachments AS a
                    WHERE a.attachment_id = r.attachment_id
                )
            UNION ALL
            SELECT
                format(
                    'foreign key violation: ref {} refers to conversation {}, which does not exist',
                    r.ref_id,
                    r.conversation_id
                ) AS what
            FROM (
                SELECT
                    unnest(cast(:ref_id AS VARCHAR[])) AS ref_id,
                    unnest(cast(:conversation_id AS VARCHAR[])) AS conversation_id
            ) AS r
            WHERE
                NOT EXISTS (
                    SELECT 1 FROM conversations AS c
                    WHERE c.conversation_id = r.conversation_id
                )
            UNION ALL
            SELECT
                format(
                    'foreign key violation: ref {} refers to message {}, which does not exist',
                    r.ref_id,
                    r.message_id
                ) AS what
            FROM (
                SELECT
                    unnest(cast(:ref_id AS VARCHAR[])) AS ref_id,
                    unnest(cast(:message_id AS VARCHAR[])) AS message_id
            ) AS r
            WHERE
                r.message_id IS NOT NULL
                AND NOT EXISTS (
                    SELECT 1 FROM messages AS m
                    WHERE m.message_id = r.message_id
                )
        ) AS problem
        ORDER BY problem.what
        LIMIT 1
    ), TRUE)
QUALIFY row_number() OVER (PARTITION BY batch.ref_id ORDER BY batch.position) = 1
ON CONFLICT (ref_id) DO NOTHING;

-- name: refresh_ref_counts(attachment_id)!
-- Recount the refs of the given attachments (a list of ids).
UPDATE attachments
SET
    ref_count = (
        SELECT count(*)
        FROM attachment_refs AS r
        WHERE r.attachment_id = attachments.attachment_id
    )
WHERE attachment_id IN (SELECT unnest(cast(:attachment_id AS VARCHAR[])));

-- name: get_attachments(conversation_id)
-- One row per ref of the conversation, joined to its shared attachment row; a ref
-- without a message first (NULLS FIRST: SQLite's order, not DuckDB's default).
SELECT
    a.attachment_id,
    r.conversation_id,
    r.message_id,
    a.mime_type,
    a.size_bytes,
    a.path,
    a.provider_meta
FROM attachment_refs AS r
INNER JOIN attachments AS a ON r.attachment_id = a.attachment_id
WHERE r.conversation_id = :conversation_id
ORDER BY a.attachment_id ASC, r.message_id ASC NULLS FIRST;

-- name: prune_attachment_refs(conversation_id, keep_ref_ids)
-- Delete the refs of a conversation that are not in keep_ref_ids (a JSON array) and
-- return each deleted ref (ref_id, attachment_id), for refresh_ref_counts.
DELETE FROM attachment_refs
WHERE
    conversation_id = :conversation_id
    AND ref_id NOT IN (
        SELECT unnest(from_json(:keep_ref_ids, '["VARCHAR"]'))
    )
RETURNING ref_id, attachment_id;

-- name: prune_attachment_refs_many(conversation_id, keep_conversation_id, keep_ref_id)
-- prune_attachment_refs for a whole batch of conversations in one statement (dialects
-- that bind lists, polylogue.storage.queries.LIST_QUERIES): delete the refs of the
-- conversations in conversation_id except the pairs (keep_conversation_id[i],
-- keep_ref_id[i]); return each deleted ref (ref_id, attachment_id).
DELETE FROM attachment_refs
WHERE
    conversation_id IN (SELECT unnest(cast(:conversation_id AS VARCHAR[])))
    AND NOT EXISTS (
        SELECT 1
        FROM (
            SELECT
                unnest(cast(:keep_conversation_id AS VARCHAR[])) AS conversation_id,
                unnest(cast(:keep_ref_id AS VARCHAR[])) AS ref_id
        ) AS keep
        WHERE
            keep.conversation_id = attachment_refs.conversation_id
            AND keep.ref_id = attachment_refs.ref_id
    )
RETURNING ref_id, attachment_id;

-- name: delete_unreferenced_attachments(attachment_id)!
-- Delete those of the given attachments (a list of ids) that no ref points to any more.
DELETE FROM attachments
WHERE
    attachment_id IN (SELECT unnest(cast(:attachment_id AS VARCHAR[])))
    AND ref_count = 0;

-- name: list_attachments_in_id_range(after_id, last_id)
-- The refs, joined to their attachment rows, of every conversation whose id is after
-- after_id and at most last_id, in conversation_id order (code points), then as
-- get_attachments orders them: one query per page of export, copy and verify.
SELECT
    a.attachment_id,
    r.conversation_id,
    r.message_id,
    a.mime_type,
    a.size_bytes,
    a.path,
    a.provider_meta
FROM attachment_refs AS r
INNER JOIN attachments AS a ON r.attachment_id = a.attachment_id
-- (noqa RF02: the linter reads the parameters as columns of the join.)
WHERE r.conversation_id > :after_id AND r.conversation_id <= :last_id  -- noqa: RF02
ORDER BY r.conversation_id ASC, a.attachment_id ASC, r.message_id ASC NULLS FIRST;
