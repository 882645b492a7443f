-- Move due members of a delay set to their send streams, oldest first.
-- With a chat state key the entry gets the chat's next sequence number (a message entering the
-- order for the first time). Every key touched is declared (Redis Cluster routes by them), but
-- which chat keys are due is known only here: a due member whose chat key was not passed stops
-- the move, and the reply names the chat keys of the due members still waiting, so the caller
-- calls again with them (in the pipeline's slot like every key here).
-- KEYS[1]: delay set; KEYS[2..4]: send streams high, normal, low; KEYS[5..]: chat state keys.
-- ARGV[1]: most to move; ARGV[2]: lifetime of per-chat order state, seconds.
-- Returns {moved, chat state keys needed for the due members not moved}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
local target = {h = KEYS[2], n = KEYS[3], l = KEYS[4]}
local declared = {}
for i = 5, #KEYS do declared[KEYS[i]] = true end
-- A member is "<priority code>:<length>:<chat state key><payload>" (the key may be empty); one
-- written before the length prefix, "<code>|<chat state key>|<payload>", is read as written.
local function unroute(member)
  local code = string.sub(member, 1, 1)
  if string.sub(member, 2, 2) == '|' then
    local bar = string.find(member, '|', 3, true)
    return code, string.sub(member, 3, bar - 1), string.sub(member, bar + 1)
  end
  local colon = string.find(member, ':', 3, true)
  local stop = colon + tonumber(string.sub(member, 3, colon - 1))
  return code, string.sub(member, colon + 1, stop), string.sub(member, stop + 1)
end
local moved, needed = 0, {}
for _, member in ipairs(due) do
  local code, chat, payload = unroute(member)
  if chat ~= '' and not declared[chat] then
    table.insert(needed, chat)
  elseif #needed == 0 then
    local stream = target[code]
    if chat == '' then
      redis.call('XADD', stream, '*', 'd', payload)
    else
      local seq = redis.call('HINCRBY', chat, 'seq', 1)
      redis.call('EXPIRE', chat, tonumber(ARGV[2]))
      redis.call('XADD', stream, '*', 'd', payload, 's', seq)
    end
    redis.call('ZREM', KEYS[1], member)
    moved = moved + 1
  end
end
return {moved, needed}
