-- Remove a deleted tweet from a batch of timelines or recent sets.
-- KEYS: the sets   ARGV: 1 the tweet ID (8 bytes)
local removed = 0
for _, key in ipairs(KEYS) do
  local s = redis.call('GET', key)
  if s then
    local new = remove_id(s, ARGV[1])
    if new then
      store(key, new)
      removed = removed + 1
    end
  end
end
return removed
