-- Attachments: shared attachment rows, per-conversation refs, ref counting and pruning.
-- keep_ref_ids is one JSON array (text) so that every dialect binds a list alike; ref ids
-- are 'ref-' + hex. The bulk queries take one array per column (one statement per batch).
--
-- Concurrent writers (READ COMMITTED): whoever adds or removes refs of an attachment
-- holds its row lock when it recounts them, and the recount is a statement started after
-- the lock was granted, so it sees every ref committed by the writers that held the lock
-- before (a subquery in the statement that waits for the lock would not: its snapshot
-- predates the wait). Writers lock rows in one order, attachment id (COLLATE "C"), in
-- one statement per transaction where they can, so that they queue instead of deadlocking.

-- name: upsert_attachments(attachment_id, mime_type, size_bytes, path, provider_meta)!
-- Insert attachment rows, or fill in what changed; an incoming NULL never erases a known
-- value. One statement per batch: each parameter is the list of one column's values. A
-- batch may name an attachment many times (one ON CONFLICT DO UPDATE cannot touch a row
-- twice), so rows are first merged per id: each column takes its last non-NULL value, as
-- if the rows were upserted one after the other. The row count is the number of
-- attachment rows inserted or changed. Every row is locked, changed or not (ON CONFLICT
-- DO UPDATE locks the rows its WHERE then skips), in id order; a row of all NULLs only
-- locks an existing attachment, which is how the binding takes the locks of the
-- attachments a bundle prunes in the same pass.
INSERT INTO attachments AS a (
    attachment_id, mime_type, size_bytes, path, ref_count, provider_meta
)
SELECT
    merged.attachment_id,
    merged.mime_types[1] AS mime_type,
    merged.sizes[1] AS size_bytes,
    merged.paths[1] AS path,
    0 AS ref_count,
    merged.metas[1] AS provider_meta
FROM (
    -- per id, each column's non-NULL values, last first
    SELECT
        u.attachment_id,
        array_agg(u.mime_type ORDER BY u.position DESC)
        FILTER (WHERE u.mime_type IS NOT NULL) AS mime_types,
        array_agg(u.size_bytes ORDER BY u.position DESC)
        FILTER (WHERE u.size_bytes IS NOT NULL) AS sizes,
        array_agg(u.path ORDER BY u.position DESC)
        FILTER (WHERE u.path IS NOT NULL) AS paths,
        array_agg(u.provider_meta ORDER BY u.position DESC)
        FILTER (WHERE u.provider_meta IS NOT NULL) AS metas
    FROM
        unnest(
            cast(:attachment_id AS TEXT[]),
            cast(:mime_type AS TEXT[]),
            cast(:size_bytes AS BIGINT[]),
            cast(:path AS TEXT[]),
            cast(:provider_meta AS JSONB[])
        ) WITH ORDINALITY
            AS u (attachment_id, mime_type, size_bytes, path, provider_meta, position)
    GROUP BY u.attachment_id
) AS merged
-- (noqa RF02: the linter reads the collation name "C" as a column.)
ORDER BY merged.attachment_id COLLATE "C"  -- noqa: RF02, RF03
ON CONFLICT (attachment_id) DO UPDATE SET
    mime_type = coalesce(excluded.mime_type, a.mime_type),
    size_bytes = coalesce(excluded.size_bytes, a.size_bytes),
    path = coalesce(excluded.path, a.path),
    provider_meta = coalesce(excluded.provider_meta, a.provider_meta)
WHERE (
    a.mime_type, a.size_bytes, a.path, a.provider_meta
) IS DISTINCT FROM (
    coalesce(excluded.mime_type, a.mime_type),
    coalesce(excluded.size_bytes, a.size_bytes),
    coalesce(excluded.path, a.path),
    coalesce(excluded.provider_meta, a.provider_meta)
);

-- name: insert_attachment_refs(ref_id, attachment_id, conversation_id, message_id, provider_meta)!
-- Insert the refs that are new, one statement per batch (each parameter is the list of
-- that column's values), in ref id order; the row count is the number of new refs.
INSERT INTO attachment_refs (
    ref_id, attachment_id, conversation_id, message_id, provider_meta
)
SELECT
    u.ref_id,
    u.attachment_id,
    u.conversation_id,
    u.message_id,
    u.provider_meta
FROM
    unnest(
        cast(:ref_id AS TEXT[]),
        cast(:attachment_id AS TEXT[]),
        cast(:conversation_id AS TEXT[]),
        cast(:message_id AS TEXT[]),
        cast(:provider_meta AS JSONB[])
    ) AS u (ref_id, attachment_id, conversation_id, message_id, provider_meta)
ORDER BY u.ref_id COLLATE "C"  -- noqa: RF02
ON CONFLICT (ref_id) DO NOTHING;

-- name: refresh_ref_counts(attachment_id)!
-- Recount the refs of the given attachments (the list of their ids, bound as an array).
-- The caller already holds their row locks (upsert_attachments, lock_attachments).
UPDATE attachments AS a
SET
    ref_count = (
        SELECT count(*)
        FROM attachment_refs AS r
        WHERE r.attachment_id = a.attachment_id
    )
WHERE a.attachment_id = any(cast(:attachment_id AS TEXT[]));

-- name: get_attachments(conversation_id)
-- One row per ref of the conversation, joined to its shared attachment row, by
-- attachment id then message id (NULL first), in byte order as on SQLite.
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
-- (noqa RF02: the linter reads the collation name "C" as a column of the join.)
ORDER BY
    a.attachment_id COLLATE "C" ASC,  -- noqa: RF02
    r.message_id COLLATE "C" ASC NULLS FIRST;  -- noqa: RF02

-- name: lock_attachments(attachment_id)
-- Lock the rows of the given attachments (a list of ids), in id order, before their refs
-- are recounted (dialects whose writers lock rows: ROW_LOCK_QUERIES). The lock is the one upsert_attachments takes.
SELECT a.attachment_id
FROM attachments AS a
WHERE a.attachment_id = any(cast(:attachment_id AS TEXT[]))
ORDER BY a.attachment_id COLLATE "C"  -- noqa: RF02, RF03
FOR NO KEY UPDATE;

-- name: prune_attachment_refs(conversation_id, keep_ref_ids)
-- Delete the refs of a conversation that are not in keep_ref_ids (a JSON array) and
-- return each deleted ref (ref_id, attachment_id), for refresh_ref_counts.
DELETE FROM attachment_refs AS r
WHERE
    r.conversation_id = :conversation_id
    AND r.ref_id NOT IN (
        SELECT jsonb_array_elements_text(cast(:keep_ref_ids AS JSONB))
    )
RETURNING r.ref_id, r.attachment_id;

-- name: prune_attachment_refs_many(conversation_id, keep_conversation_id, keep_ref_id)
-- prune_attachment_refs for a whole batch of conversations in one statement (save_many):
-- delete the refs of the conversations in conversation_id except the pairs
-- (keep_conversation_id[i], keep_ref_id[i]); return each deleted ref (ref_id,
-- attachment_id).
DELETE FROM attachment_refs AS r
WHERE
    r.conversation_id = any(cast(:conversation_id AS TEXT[]))
    AND NOT EXISTS (
        SELECT 1
        FROM
            unnest(
                cast(:keep_conversation_id AS TEXT[]), cast(:keep_ref_id AS TEXT[])
            ) AS k (conversation_id, ref_id)
        WHERE k.conversation_id = r.conversation_id AND k.ref_id = r.ref_id
    )
RETURNING r.ref_id, r.attachment_id;

-- name: delete_unreferenced_attachments(attachment_id)!
-- Delete those of the given attachments (the list of their ids, bound as an array) that
-- no ref points to any more.
DELETE FROM attachments
WHERE attachment_id = any(cast(:attachment_id AS TEXT[])) AND ref_count = 0;

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
WHERE
    r.conversation_id IN (
        SELECT c.conversation_id
        FROM conversations AS c
        WHERE
            c.conversation_id COLLATE "C" > cast(:after_id AS TEXT)  -- noqa: RF02, RF03
            AND c.conversation_id COLLATE "C" <= cast(:last_id AS TEXT)  -- noqa: RF02, RF03
    )
ORDER BY
    r.conversation_id COLLATE "C" ASC,  -- noqa: RF02, RF03
    a.attachment_id COLLATE "C" ASC,  -- noqa: RF02, RF03
    r.message_id COLLATE "C" ASC NULLS FIRST;  -- noqa: RF02, RF03
