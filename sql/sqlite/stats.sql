-- Archive statistics for `polylogue stats`.

-- name: provider_counts()
-- Conversations, messages and attachment refs per provider, with the characters of
-- message text and the first and last message timestamp (as stored: text order).
WITH
message_counts AS (
    SELECT
        conversation_id,
        count(*) AS messages,
        sum(length(text)) AS text_chars,
        min(timestamp) AS first_message_at,
        max(timestamp) AS last_message_at
    FROM messages
    GROUP BY conversation_id
),

ref_counts AS (
    SELECT
        conversation_id,
        count(*) AS attachments
    FROM attachment_refs
    GROUP BY conversation_id
)

SELECT
    c.provider_name,
    count(*) AS conversations,
    coalesce(sum(m.messages), 0) AS messages,
    coalesce(sum(r.attachments), 0) AS attachments,
    coalesce(sum(m.text_chars), 0) AS text_chars,
    min(m.first_message_at) AS first_message_at,
    max(m.last_message_at) AS last_message_at
FROM conversations AS c
LEFT JOIN message_counts AS m ON c.conversation_id = m.conversation_id
LEFT JOIN ref_counts AS r ON c.conversation_id = r.conversation_id
GROUP BY c.provider_name
ORDER BY c.provider_name ASC;

-- name: messages_per_month()
-- Messages per provider per calendar month of their timestamp (NULL when unknown).
SELECT
    c.provider_name,
    substr(m.timestamp, 1, 7) AS month,
    count(*) AS messages
FROM messages AS m
INNER JOIN conversations AS c ON m.conversation_id = c.conversation_id
GROUP BY c.provider_name, month
ORDER BY c.provider_name ASC, month ASC;

-- name: count_rows()^
-- Rows per table: what `polylogue verify` compares first.
SELECT
    (SELECT count(*) FROM conversations) AS conversations,
    (SELECT count(*) FROM messages) AS messages,
    (SELECT count(*) FROM attachments) AS attachments,
    (SELECT count(*) FROM attachment_refs) AS attachment_refs,
    (SELECT count(*) FROM runs) AS runs;

-- name: analyze_tables#
-- Refresh the planner's statistics after a bulk load (the end of `polylogue import`
-- and `copy`): SQLite's own choice of what is worth analysing, cheap when nothing is.
PRAGMA optimize;
