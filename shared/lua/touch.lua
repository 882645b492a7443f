-- The heartbeat of one consumer: reset the idle time of the entries it still holds, and only of
-- those. XCLAIM alone would take back an entry another consumer claimed while this one was frozen
-- (stopped, swapped out, starved of CPU), and both would then send it. An entry no longer pending
-- to this consumer (claimed by another, acknowledged, trimmed) is reported as lost instead, so
-- the caller drops it before it reaches Telegram.
-- KEYS: the stream
-- ARGV: group, consumer, then the entry ids
-- Returns the ids no longer this consumer's.
local lost = {}
local mine = {}
for i = 3, #ARGV do
  local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if row[1] and row[1][2] == ARGV[2] then
    mine[#mine + 1] = ARGV[i]
  else
    lost[#lost + 1] = ARGV[i]
  end
end
-- JUSTID: a heartbeat is no new delivery, so the delivery counters stay as they are; in chunks,
-- as unpack has a bounded stack
for first = 1, #mine, 500 do
  local args = {}
  for i = first, math.min(first + 499, #mine) do args[#args + 1] = mine[i] end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(args))
end
return lost
