-- floodgate message store: bots, chats, every message in and out, API sessions.
CREATE TABLE IF NOT EXISTS bots (
    id          bigint PRIMARY KEY,
    username    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS chats (
    id                bigserial PRIMARY KEY,
    bot_id            bigint NOT NULL REFERENCES bots (id),
    telegram_chat_id  bigint NOT NULL,
    type              text,
    title             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bot_id, telegram_chat_id)
);

CREATE TABLE IF NOT EXISTS messages (
    id                            bigserial PRIMARY KEY,
    message_uid                   text UNIQUE,           -- floodgate's id of an outgoing message
    direction                     text NOT NULL CHECK (direction IN ('in', 'out')),
    bot_id                        bigint NOT NULL REFERENCES bots (id),
    chat_db_id                    bigint NOT NULL REFERENCES chats (id),
    telegram_message_id           bigint,
    reply_to_telegram_message_id  bigint,
    sender_id                     bigint,
    text                          text,
    status                        text,
    priority                      text,
    mentions_bot                  boolean NOT NULL DEFAULT false,
    replies_to_bot                boolean NOT NULL DEFAULT false,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz
);

-- a message by its Telegram id within a chat (edits, replies pointing at it)
CREATE INDEX IF NOT EXISTS ix_messages_chat_telegram_msg
    ON messages (chat_db_id, telegram_message_id);
-- the automatic-priority lookup: did the message being answered mention or reply to this bot?
CREATE INDEX IF NOT EXISTS ix_messages_reply_lookup
    ON messages (chat_db_id, bot_id, telegram_message_id);
-- a bot's recent incoming messages
CREATE INDEX IF NOT EXISTS ix_messages_incoming
    ON messages (bot_id, created_at, chat_db_id);

CREATE TABLE IF NOT EXISTS api_sessions (
    id          bigserial PRIMARY KEY,
    token_id    text NOT NULL,
    is_active   boolean NOT NULL DEFAULT true,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS ix_sessions_token_active_expires
    ON api_sessions (token_id, is_active, expires_at);
CREATE INDEX IF NOT EXISTS ix_sessions_expires_active
    ON api_sessions (expires_at, is_active);
