-- Fan a new tweet out to one batch of timelines in one round trip: only timelines that exist
-- (warm) are written, each capped, and each owner's live channel is told.
-- KEYS: the timelines   ARGV: 1 entry, 2 cap, 3 timeline key prefix, 4 channel prefix
local written = 0
local skip = #ARGV[3] + 1
local e = unwire(ARGV[1])
local cap = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local s = redis.call('GET', key)
  if s then
    local new = insert(s, e, cap)
    if new then store(key, new) end
    redis.call('PUBLISH', ARGV[4] .. string.sub(key, skip), 't:' .. ARGV[1])
    written = written + 1
  end
end
return written
