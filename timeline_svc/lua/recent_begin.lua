-- Claim the load of an author's recent-tweets set (as build_begin.lua, for one author).
-- KEYS: 1 recent set   ARGV: 1 ttl seconds while loading
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], -1, 'h:' .. INF)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
