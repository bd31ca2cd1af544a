-- Add a new tweet to its author's recent set when the set exists, and tell the author's
-- channel (which the live streams of the author's followers listen to when they are a celebrity).
-- KEYS: 1 recent set   ARGV: 1 entry, 2 cap, 3 ttl, 4 author channel ('' for none)
local s = redis.call('GET', KEYS[1])
if s then
  local new = insert(s, unwire(ARGV[1]), tonumber(ARGV[2]))
  if new then store(KEYS[1], new) end
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], 't:' .. ARGV[1]) end
return 1
