-- An incoming message is one row per chat: an update recorded twice (its row committed, then
-- the acknowledgement in Redis lost) or an edit of the message updates that row instead of
-- adding one, so the reply lookup finds one answer, not any of several. Rows stored twice
-- before this version are merged first, keeping the latest text and any mention or reply
-- either of them saw. (On a large table this takes a lock on messages for as long as the
-- merge and the index take.)
UPDATE messages keep
SET mentions_bot = keep.mentions_bot OR other.mentions_bot,
    replies_to_bot = keep.replies_to_bot OR other.replies_to_bot
FROM messages other
WHERE keep.direction = 'in' AND other.direction = 'in'
  AND keep.chat_db_id = other.chat_db_id
  AND keep.telegram_message_id = other.telegram_message_id
  AND keep.id > other.id
  AND NOT EXISTS (
      SELECT 1 FROM messages later
      WHERE later.direction = 'in' AND later.chat_db_id = keep.chat_db_id
        AND later.telegram_message_id = keep.telegram_message_id AND later.id > keep.id);

DELETE FROM messages older
USING messages newer
WHERE older.direction = 'in' AND newer.direction = 'in'
  AND older.chat_db_id = newer.chat_db_id
  AND older.telegram_message_id = newer.telegram_message_id
  AND older.id < newer.id;

CREATE UNIQUE INDEX IF NOT EXISTS ux_messages_incoming_once
    ON messages (chat_db_id, telegram_message_id) WHERE direction = 'in';
