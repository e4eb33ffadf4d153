-- Attachments: shared attachment rows, per-conversation refs, ref counting and pruning.
-- keep_ref_ids is one JSON array (text) so that every dialect binds a list alike; ref ids
-- are 'ref-' + hex, so JSON functions see them whole.

-- name: upsert_attachments(attachment_id, mime_type, size_bytes, path, provider_meta)*!
-- Insert attachment rows, or fill in what changed; an incoming NULL never erases a
-- known value.
INSERT INTO attachments (
    attachment_id, mime_type, size_bytes, path, ref_count, provider_meta
)
VALUES (:attachment_id, :mime_type, :size_bytes, :path, 0, :provider_meta)
ON CONFLICT (attachment_id) DO UPDATE SET
    mime_type = coalesce(excluded.mime_type, attachments.mime_type),
    size_bytes = coalesce(excluded.size_bytes, attachments.size_bytes),
    path = coalesce(excluded.path, attachments.path),
    provider_meta = coalesce(excluded.provider_meta, attachments.provider_meta)
WHERE (
    attachments.mime_type IS NOT coalesce(excluded.mime_type, attachments.mime_type)
    OR attachments.size_bytes IS NOT coalesce(excluded.size_bytes, attachments.size_bytes)
    OR attachments.path IS NOT coalesce(excluded.path, attachments.path)
    OR attachments.provider_meta
    IS NOT coalesce(excluded.provider_meta, attachments.provider_meta)
);

-- name: insert_attachment_refs(ref_id, attachment_id, conversation_id, message_id, provider_meta)*!
-- Insert refs that are new; the summed row count is the number of new refs.
INSERT INTO attachment_refs (
    ref_id, attachment_id, conversation_id, message_id, provider_meta
)
VALUES (:ref_id, :attachment_id, :conversation_id, :message_id, :provider_meta)
ON CONFLICT (ref_id) DO NOTHING;

-- name: refresh_ref_counts(attachment_id)*!
-- Recount the refs of the given attachments (one id per row: ids are bound as they are,
-- never through JSON, whose SQLite functions stop at U+0000).
UPDATE attachments
SET
    ref_count = (
        SELECT count(*)
        FROM attachment_refs AS r
        WHERE r.attachment_id = attachments.attachment_id
    )
WHERE attachment_id = :attachment_id;

-- name: get_attachments(conversation_id)
-- One row per ref of the conversation, joined to its shared attachment row.
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
ORDER BY a.attachment_id ASC, r.message_id ASC;

-- name: prune_attachment_refs(conversation_id, keep_ref_ids)
-- Delete the refs of a conversation that are not in keep_ref_ids (a JSON array) and
-- return each deleted ref (ref_id, attachment_id), for refresh_ref_counts. This is also
-- how SQLite prunes a batch, one statement per conversation: it binds no lists, a JSON
-- array cannot carry conversation ids (json_each stops at U+0000, which they may hold;
-- ref ids are hex digests), and a DELETE ... RETURNING cannot run row-wise (*!).
DELETE FROM attachment_refs
WHERE
    attachment_refs.conversation_id = :conversation_id
    AND attachment_refs.ref_id NOT IN (SELECT j.value FROM json_each(:keep_ref_ids) AS j)
RETURNING attachment_refs.ref_id, attachment_refs.attachment_id;

-- name: delete_unreferenced_attachments(attachment_id)*!
-- Delete those of the given attachments (one id per row) that no ref points to any more.
DELETE FROM attachments
WHERE attachment_id = :attachment_id AND ref_count = 0;

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
ORDER BY r.conversation_id ASC, a.attachment_id ASC, r.message_id ASC;
