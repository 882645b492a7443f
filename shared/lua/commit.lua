-- Apply one consumer's changes atomically (see shared.broker.Commit).
-- KEYS: every key the commit touches, referenced by index in ARGV (so a commit declares its
-- keys and, on a Redis Cluster, touches the one slot they share).
-- ARGV[1]: consumer group; ARGV[2]: lifetime of per-chat order state, seconds; ARGV[3]: its
-- lifetime once every message of the chat has settled (a short one); then ops. Every argument
-- handed to a script costs Redis time, so the ops take many messages each and what those
-- share goes once:
--   once <key#> <ttl ms>                   first if present: stop here if the key exists (the
--                                          commit was applied before), else set it
--   idem <key#> <message id> <ttl s>       claim an idempotency key (skip the writes of that
--                                          id if taken)
--   recs <ttl s> <ids> <n shared> (<field> <value>)... <n own> <field>... <count>
--       then per record: <key#> [<message id> if ids is 1] <value>...
--                                          write status records whose fields share their names
--                                          (the shared ones their values too); ttl s > 0 their
--                                          lifetime from now, -s: they keep their lifetime, one
--                                          that has none (made anew) gets s; a record whose
--                                          message's idempotency key was taken is skipped
--   acks <key#> <count> <entry id>...      acknowledge and delete consumed entries of a stream
--                                          (one XACK and one XDEL for all; at most 1000)
--   seen <key#> <entry id>                 acknowledge only (a stream other groups read too)
--   adds <key#> <ids> <count> then per entry: [<message id> if ids is 1] <payload> <chat#>
--                                          append to a stream, in order; with a chat state key
--                                          (chat# > 0) an entry gets the chat's next sequence
--                                          number; skipped for a taken message id
--   delay <key#> <ms> <member>             add to a delay set, due ms after the server clock
--   dead <index#> <payloads#> <meta#> <message id> <member> <meta>
--                                          move to the dead-letter queue (its three keys)
--   settles <stream#> <count#> <n> then per message: <chat#> <parked#> <seq>
--                                          message seq of a chat is done (sent or dead): advance
--                                          the chat's cursor and release its next parked
--                                          message into the stream; one done before its turn
--                                          is marked (x<seq>, counted in xn) and passed over
--                                          when the cursor reaches it
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local group = ARGV[1]
-- numbers handed to redis.call are printed with %.17g on every call: lifetimes and sequence
-- numbers go on as the strings they came as
local ttl = string.format('%d', tonumber(ARGV[2]))
local settled_ttl = string.format('%d', tonumber(ARGV[3]))
local taken = {}
local result = {}

--! include order

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
  local state = redis.call('HMGET', chat, 'cur', 'seq', 'xn')
  local cur, last = tonumber(state[1] or '0'), tonumber(state[2] or '0')
  local out_of_turn = tonumber(state[3] or '0')
  if seq > cur + 1 then
    -- settled before its turn (dead-lettered while an earlier message of the chat is still on
    -- its way): the cursor must not jump past the earlier ones, or the gate would take them
    -- for done and they would never be sent. It is marked, and passed over once the cursor
    -- gets to it.
    if redis.call('HSETNX', chat, 'x' .. seq_text, '1') == 1 then
      redis.call('HINCRBY', chat, 'xn', 1)
    end
    redis.call('EXPIRE', chat, ttl)
    return
  end
  local in_turn = seq == cur + 1
  if in_turn then
    cur = seq
  end
  -- messages settled out of turn right after the cursor are passed over (one HMGET field tells
  -- whether there are any), on every settle in the chat, not only one that moved the cursor: a
  -- mark left behind (a process of an earlier release moved the cursor without reading them)
  -- is passed by the chat's next settle of any kind
  local passed
  cur, passed = pass_marks(chat, cur, out_of_turn)
  if in_turn and not passed then
    redis.call('HSET', chat, 'cur', seq_text)
  end
  -- only a message numbered already can be parked: past the chat's last number, none is
  if cur < last then
    release(parked, count, stream, cur + 1)
  end
  -- nothing of the chat left to send: its state goes soon (the next message renews it)
  if cur >= last then
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

-- Whether the message whose id (if ids) stands at ARGV[j] had its idempotency key taken, and
-- where its other arguments start
local function taken_at(ids, j)
  if not ids then return false, j end
  return taken[ARGV[j]] ~= nil, j + 1
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
  elseif op == 'recs' then
    local ttl_text, ids, nshared = ARGV[i + 1], ARGV[i + 2] == '1', tonumber(ARGV[i + 3])
    local ttl_s = tonumber(ttl_text)
    local args = { false }
    for s = 1, 2 * nshared do args[1 + s] = ARGV[i + 3 + s] end
    local j = i + 4 + 2 * nshared
    local nown = tonumber(ARGV[j])
    local names = j + 1
    j = names + nown
    local count = tonumber(ARGV[j])
    j = j + 1
    local first = 2 + 2 * nshared
    for _ = 1, count do
      args[1] = KEYS[tonumber(ARGV[j])]
      local skip
      skip, j = taken_at(ids, j + 1)
      if not skip then
        for o = 0, nown - 1 do
          args[first + 2 * o] = ARGV[names + o]
          args[first + 2 * o + 1] = ARGV[j + o]
        end
        record(args, nshared + nown, ttl_text, ttl_s)
      end
      j = j + nown
    end
    i = j
  elseif op == 'acks' then
    local key, count = KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
    redis.call('XACK', key, group, unpack(ARGV, i + 3, i + 2 + count))
    redis.call('XDEL', key, unpack(ARGV, i + 3, i + 2 + count))
    i = i + 3 + count
  elseif op == 'seen' then
    redis.call('XACK', KEYS[tonumber(ARGV[i + 1])], group, ARGV[i + 2])
    i = i + 3
  elseif op == 'adds' then
    local key, ids, count = KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2] == '1', tonumber(ARGV[i + 3])
    local j = i + 4
    for _ = 1, count do
      local skip
      skip, j = taken_at(ids, j)
      if not skip then
        local chat = tonumber(ARGV[j + 1])
        append(key, ARGV[j], chat > 0 and KEYS[chat] or nil)
      end
      j = j + 2
    end
    i = j
  elseif op == 'delay' then
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], now_ms + tonumber(ARGV[i + 2]), ARGV[i + 3])
    i = i + 4
  elseif op == 'dead' then
    local id = ARGV[i + 4]
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], now_ms, id)
    redis.call('HSET', KEYS[tonumber(ARGV[i + 2])], id, ARGV[i + 5])
    redis.call('HSET', KEYS[tonumber(ARGV[i + 3])], id, ARGV[i + 6])
    i = i + 7
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
