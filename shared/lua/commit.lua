-- Apply one consumer's changes atomically (see shared.broker.Commit).
-- KEYS: every key the commit touches, referenced by index in ARGV (so a commit declares its
-- keys and, on a Redis Cluster, touches the one slot they share).
-- ARGV[1]: consumer group; ARGV[2]: lifetime of per-chat order state, seconds; ARGV[3]: its
-- lifetime once every message of the chat has settled (a short one); then records:
--   once <key#> <ttl ms>                   first if present: stop here if the key exists (the
--                                          commit was applied before), else set it
--   idem <key#> <message id> <ttl s>       claim an idempotency key (skip the add of that id if taken)
--   ack  <key#> <entry id>                 acknowledge and delete a consumed entry
--   seen <key#> <entry id>                 acknowledge only (a stream other groups read too)
--   add  <key#> <message id> <payload> <chat#>
--                                          append to a stream; with a chat state key (chat# > 0)
--                                          the entry gets the chat's next sequence number
--   delay <key#> <ms> <member>             add to a delay set, due ms after the server clock
--   dead <index#> <payloads#> <meta#> <message id> <member> <meta>
--                                          move to the dead-letter queue (its three keys)
--   settle <chat#> <parked#> <seq> <stream#> <count#>
--                                          message seq of a chat is done (sent or dead): advance
--                                          the chat's cursor and release its next parked message
--   rec <key#> <message id> <ttl s; -s keeps the lifetime, or gives one of s if it has none>
--       <n> <field> <value> ...
--                                          write status record fields (skipped for a message
--                                          whose idempotency key was taken)
-- Grouped forms, for commits that claim no idempotency key (every argument handed to a script
-- costs Redis time, so what many messages share goes once):
--   recs <ttl s, as for rec> <n shared> (<field> <value>)... <n own> <field>... <count>
--       then per record: <key#> <value>...  records whose fields share their names (and the
--                                          shared fields their values)
--   acks <key#> <count> <entry id>...      acknowledge and delete entries of one stream (one
--                                          XACK and one XDEL for all; count at most 1000)
--   adds <key#> <count> then per entry: <payload> <chat#>
--                                          append to one stream, as add
--   settles <stream#> <count#> <n> then per message: <chat#> <parked#> <seq>
--                                          settle messages whose released ones go to one stream
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local group = ARGV[1]
-- numbers handed to redis.call are printed with %.17g on every call: lifetimes and sequence
-- numbers go on as the strings they came as
local ttl = string.format('%d', tonumber(ARGV[2]))
local settled_ttl = string.format('%d', tonumber(ARGV[3]))
local taken = {}
local result = {}

local function append(stream, payload, chat)
  if chat == nil then
    redis.call('XADD', stream, '*', 'd', payload)
    return
  end
  local seq = redis.call('HINCRBY', chat, 'seq', 1)
  redis.call('EXPIRE', chat, ttl)
  redis.call('XADD', stream, '*', 'd', payload, 's', seq)
end

local function settle(chat, parked, seq_text, stream, count)
  local seq = tonumber(seq_text)
  local state = redis.call('HMGET', chat, 'cur', 'seq')
  local cur = tonumber(state[1] or '0')
  if seq > cur then
    redis.call('HSET', chat, 'cur', seq_text)
    cur = seq
  end
  local nxt = redis.call('ZRANGE', parked, cur + 1, cur + 1, 'BYSCORE')
  if #nxt > 0 then
    redis.call('ZREM', parked, nxt[1])
    redis.call('DECR', count)
    redis.call('XADD', stream, '*', 'd', nxt[1], 's', cur + 1)
  end
  -- nothing of the chat left to send: its state goes soon (the next message renews it)
  if cur >= tonumber(state[2] or '0') then
    redis.call('EXPIRE', chat, settled_ttl)
  else
    redis.call('EXPIRE', chat, ttl)
  end
end

-- Write fields to a status record; ttl_s > 0: its lifetime from now; < 0: it keeps its
-- lifetime, and one made anew (every field new: it had expired) gets -ttl_s
local function record(args, n, ttl_text, ttl_s)
  local added = redis.call('HSET', unpack(args))
  if ttl_s > 0 then
    redis.call('EXPIRE', args[1], ttl_text)
  elseif ttl_s < 0 and added == n then
    redis.call('EXPIRE', args[1], string.format('%d', -ttl_s), 'NX')
  end
end

local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'idem' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    local ok = redis.call('SET', key, ARGV[i + 2], 'NX', 'EX', tonumber(ARGV[i + 3]))
    if not ok then
      taken[ARGV[i + 2]] = true
      table.insert(result, ARGV[i + 2])
      table.insert(result, redis.call('GET', key))
    end
    i = i + 4
  elseif op == 'once' then
    -- first of all: a commit already applied (its reply was lost, and it came again) is a no-op
    if not redis.call('SET', KEYS[tonumber(ARGV[i + 1])], '1', 'NX', 'PX', ARGV[i + 2]) then
      return result
    end
    i = i + 3
  elseif op == 'ack' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    redis.call('XACK', key, group, ARGV[i + 2])
    redis.call('XDEL', key, ARGV[i + 2])
    i = i + 3
  elseif op == 'seen' then
    redis.call('XACK', KEYS[tonumber(ARGV[i + 1])], group, ARGV[i + 2])
    i = i + 3
  elseif op == 'add' then
    if not taken[ARGV[i + 2]] then
      local chat = tonumber(ARGV[i + 4])
      append(KEYS[tonumber(ARGV[i + 1])], ARGV[i + 3], chat > 0 and KEYS[chat] or nil)
    end
    i = i + 5
  elseif op == 'delay' then
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], now_ms + tonumber(ARGV[i + 2]), ARGV[i + 3])
    i = i + 4
  elseif op == 'dead' then
    local id = ARGV[i + 4]
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], now_ms, id)
    redis.call('HSET', KEYS[tonumber(ARGV[i + 2])], id, ARGV[i + 5])
    redis.call('HSET', KEYS[tonumber(ARGV[i + 3])], id, ARGV[i + 6])
    i = i + 7
  elseif op == 'settle' then
    settle(KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])], ARGV[i + 3],
      KEYS[tonumber(ARGV[i + 4])], KEYS[tonumber(ARGV[i + 5])])
    i = i + 6
  elseif op == 'rec' then
    local n = tonumber(ARGV[i + 4])
    if not taken[ARGV[i + 2]] then
      local args = { KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 5, i + 4 + 2 * n) }
      record(args, n, ARGV[i + 3], tonumber(ARGV[i + 3]))
    end
    i = i + 5 + 2 * n
  elseif op == 'recs' then
    local ttl_text, nshared = ARGV[i + 1], tonumber(ARGV[i + 2])
    local ttl_s = tonumber(ttl_text)
    local args = { false }
    for s = 1, 2 * nshared do args[1 + s] = ARGV[i + 2 + s] end
    local j = i + 3 + 2 * nshared
    local nown = tonumber(ARGV[j])
    local names = j + 1
    j = names + nown
    local count = tonumber(ARGV[j])
    j = j + 1
    local first = 2 + 2 * nshared
    for _ = 1, count do
      args[1] = KEYS[tonumber(ARGV[j])]
      for o = 0, nown - 1 do
        args[first + 2 * o] = ARGV[names + o]
        args[first + 2 * o + 1] = ARGV[j + 1 + o]
      end
      record(args, nshared + nown, ttl_text, ttl_s)
      j = j + 1 + nown
    end
    i = j
  elseif op == 'acks' then
    local key, count = KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
    redis.call('XACK', key, group, unpack(ARGV, i + 3, i + 2 + count))
    redis.call('XDEL', key, unpack(ARGV, i + 3, i + 2 + count))
    i = i + 3 + count
  elseif op == 'adds' then
    local key, count = KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
    local j = i + 3
    for _ = 1, count do
      local chat = tonumber(ARGV[j + 1])
      append(key, ARGV[j], chat > 0 and KEYS[chat] or nil)
      j = j + 2
    end
    i = j
  elseif op == 'settles' then
    local stream, count = KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])]
    local n = tonumber(ARGV[i + 3])
    local j = i + 4
    for _ = 1, n do
      settle(KEYS[tonumber(ARGV[j])], KEYS[tonumber(ARGV[j + 1])], ARGV[j + 2], stream, count)
      j = j + 3
    end
    i = j
  else
    return redis.error_reply('commit: unknown op ' .. tostring(op))
  end
end
return result
