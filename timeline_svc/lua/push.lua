-- Fan a new tweet out to one batch of timelines in one round trip: only timelines that exist
-- (warm) are written, each capped, and each owner's live channel is told.
-- KEYS: the timelines   ARGV: 1 score, 2 member, 3 cap, 4 timeline key prefix, 5 channel prefix
local written = 0
local skip = #ARGV[4] + 1
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', key, ARGV[1], ARGV[2])
    trim(key, tonumber(ARGV[3]))
    redis.call('PUBLISH', ARGV[5] .. string.sub(key, skip), 't:' .. ARGV[2])
    written = written + 1
  end
end
return written
