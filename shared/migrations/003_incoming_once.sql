-- An incoming message is one row per chat: an update recorded twice (its row committed, then
-- the acknowledgement in Redis lost) or an edit of the message updates that row instead of
-- adding one, so the reply lookup finds one answer, not any of several. Rows stored twice
-- before this version are merged first, keeping the latest text and every mention or reply
-- any of them saw. (On a large table this takes a lock on messages for as long as the
-- merge and the index take.)
UPDATE messages keep
SET mentions_bot = seen.mentions_bot, replies_to_bot = seen.replies_to_bot
FROM (
    SELECT max(id) AS id, bool_or(mentions_bot) AS mentions_bot,
           bool_or(replies_to_bot) AS replies_to_bot
    FROM messages
    WHERE direction = 'in'
    GROUP BY chat_db_id, telegram_message_id
    HAVING count(*) > 1
) seen
WHERE keep.id = seen.id;

DELETE FROM messages older
USING messages newer
WHERE older.direction = 'in' AND newer.direction = 'in'
  AND older.chat_db_id = newer.chat_db_id
  AND older.telegram_message_id = newer.telegram_message_id
  AND older.id < newer.id;

CREATE UNIQUE INDEX IF NOT EXISTS ux_messages_incoming_once
    ON messages (chat_db_id, telegram_message_id) WHERE direction = 'in';
