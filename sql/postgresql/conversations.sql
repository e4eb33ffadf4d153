-- Conversations: upsert that skips unchanged rows, point and list reads, delete.

-- name: upsert_conversations(conversation_id, provider_name, provider_conversation_id, title, created_at, updated_at, content_hash, provider_meta, version)!
-- Insert conversations, or update one when a stored field differs. Provider ids and
-- version are never changed by an update, and an unchanged row is not rewritten: the
-- row count is how many were inserted or changed. One query for one conversation and
-- for a batch (save_conversation passes a batch of one).
-- One statement for the batch (save_many: one round trip per batch instead of one per
-- conversation). Each parameter is the list of one column's
-- values. An id listed twice keeps its last values, as if upserted one after the other
-- (the anti-join drops rows a later row of the same id replaces). Rows are written (and
-- locked) in id order, the order every writer locks conversations in.
INSERT INTO conversations AS c (
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
)
SELECT
    u.conversation_id,
    u.provider_name,
    u.provider_conversation_id,
    u.title,
    u.created_at,
    u.updated_at,
    u.content_hash,
    u.provider_meta,
    u.version
FROM
    unnest(
        cast(:conversation_id AS TEXT[]),
        cast(:provider_name AS TEXT[]),
        cast(:provider_conversation_id AS TEXT[]),
        cast(:title AS TEXT[]),
        cast(:created_at AS TEXT[]),
        cast(:updated_at AS TEXT[]),
        cast(:content_hash AS TEXT[]),
        cast(:provider_meta AS JSONB[]),
        cast(:version AS BIGINT[])
    ) WITH ORDINALITY
        AS u (
            conversation_id,
            provider_name,
            provider_conversation_id,
            title,
            created_at,
            updated_at,
            content_hash,
            provider_meta,
            version,
            position
        )
WHERE
    NOT EXISTS (
        SELECT 1
        FROM
            unnest(cast(:conversation_id AS TEXT[])) WITH ORDINALITY
                AS later (
                    conversation_id, position
                )
        WHERE
            later.conversation_id = u.conversation_id
            AND later.position > u.position
    )
-- (noqa RF02: the linter reads the collation name "C" as a column.)
ORDER BY u.conversation_id COLLATE "C"  -- noqa: RF02
ON CONFLICT (conversation_id) DO UPDATE SET
    title = excluded.title,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    content_hash = excluded.content_hash,
    provider_meta = excluded.provider_meta
WHERE (
    c.title, c.created_at, c.updated_at, c.content_hash, c.provider_meta
) IS DISTINCT FROM (
    excluded.title,
    excluded.created_at,
    excluded.updated_at,
    excluded.content_hash,
    excluded.provider_meta
);

-- name: get_conversation(conversation_id)^
-- One conversation by id, or nothing.
SELECT
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations
WHERE conversation_id = :conversation_id;

-- name: list_conversations(source, provider, max_rows, skip_rows)
-- Conversations newest updated_at first (NULL last, then by id, in byte order as on
-- SQLite), optionally filtered by source (provider_meta.source) and provider; max_rows
-- NULL means no limit (LIMIT NULL is LIMIT ALL).
SELECT
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations
WHERE
    (cast(:source AS TEXT) IS NULL OR source_name = cast(:source AS TEXT))
    AND (
        cast(:provider AS TEXT) IS NULL
        OR provider_name = cast(:provider AS TEXT)
    )
ORDER BY
    updated_at COLLATE "C" DESC NULLS LAST,
    conversation_id COLLATE "C" ASC
LIMIT cast(:max_rows AS BIGINT) OFFSET cast(:skip_rows AS BIGINT);

-- name: lock_conversation(conversation_id)$
-- Lock a conversation's row against every other writer (ROW_LOCK_QUERIES), before it is
-- deleted: until the end of the transaction nobody adds a ref or message to it (their
-- foreign-key checks wait), and the statements after this one see every ref committed
-- before, so the delete's prune counts them all and the cascade finds none left.
SELECT c.conversation_id
FROM conversations AS c
WHERE c.conversation_id = :conversation_id
FOR UPDATE;

-- name: list_conversations_by_id(after_id, provider, since, max_rows)
-- Conversations in conversation_id order (code points, as every dialect sorts here),
-- the next max_rows after after_id ('' for the first page): the keyset pages of `polylogue
-- export`, `copy` and `verify`, which never skip or repeat a row. Optionally only one
-- provider, and only conversations updated at or after `since` (ISO-8601 text).
-- COLLATE "C": code-point order on every server collation. It cannot use the primary
-- key index unless the database collation is C, so each page sorts what follows it.
SELECT
    conversation_id,
    provider_name,
    provider_conversation_id,
    title,
    created_at,
    updated_at,
    content_hash,
    provider_meta,
    version
FROM conversations
WHERE
    conversation_id COLLATE "C" > cast(:after_id AS TEXT)  -- noqa: RF02
    AND (
        cast(:provider AS TEXT) IS NULL
        OR provider_name = cast(:provider AS TEXT)
    )
    AND (
        cast(:since AS TEXT) IS NULL
        OR updated_at COLLATE "C" >= cast(:since AS TEXT)  -- noqa: RF02
    )
ORDER BY conversation_id COLLATE "C" ASC  -- noqa: RF02
LIMIT cast(:max_rows AS BIGINT);

-- name: delete_conversation(conversation_id)!
-- Delete one conversation row. The binding deletes its refs and messages first, in the
-- same transaction, so that attachment ref counts stay right on every dialect.
DELETE FROM conversations
WHERE conversation_id = :conversation_id;
