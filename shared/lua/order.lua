-- A chat's order, as commit.lua (settle) and gate.lua keep it: a piece both include
-- (shared/scripts.py writes it into each), not a script of its own.
-- The chat's state is a hash: seq (the last number handed out), cur (the last number settled
-- in turn), xn (how many marks x<seq> of messages settled out of turn, ahead of cur).

-- Passes the cursor over the marks right after it; returns the new cursor and whether it moved.
local function pass_marks(chat, cur, marks)
  local passed = 0
  while marks > passed and redis.call('HDEL', chat, 'x' .. (cur + 1)) == 1 do
    cur = cur + 1
    passed = passed + 1
  end
  if passed > 0 then
    redis.call('HSET', chat, 'cur', cur, 'xn', marks - passed)
  end
  return cur, passed > 0
end

-- Puts the chat's message number seq, if it is parked, back into its stream.
local function release(parked, count, stream, seq)
  local nxt = redis.call('ZRANGE', parked, seq, seq, 'BYSCORE')
  if #nxt > 0 then
    redis.call('ZREM', parked, nxt[1])
    redis.call('DECR', count)
    redis.call('XADD', stream, '*', 'd', nxt[1], 's', seq)
  end
end
