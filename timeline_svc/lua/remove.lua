-- Remove a deleted tweet from a batch of timelines or recent sets.
-- KEYS: the sets   ARGV: 1 member
local removed = 0
for _, key in ipairs(KEYS) do
  removed = removed + redis.call('ZREM', key, ARGV[1])
end
return removed
