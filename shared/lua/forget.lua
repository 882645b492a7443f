-- Delete the consumers of a group that hold no pending entry and have been idle for long:
-- names of replicas that are gone for good (a Deployment's pods get new names). Checked and
-- deleted in one step, so a consumer cannot take an entry between the check and the delete
-- (deleting a consumer would orphan its pending entries).
-- KEYS: stream; ARGV: group, idle ms. Returns the names deleted.
local gone = {}
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return gone end  -- no such stream or group: nothing to forget
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(gone, f['name'])
  end
end
return gone
