-- API keys live in api_sessions: token_id is the key's public id, is_active false once revoked,
-- expires_at 'infinity' for a key that never expires; only the hash of the secret is stored.
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS secret_hash text NOT NULL DEFAULT '';
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS role text NOT NULL DEFAULT 'viewer';
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT '';
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS bots bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS rate integer;
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS max_priority text;
ALTER TABLE api_sessions ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
