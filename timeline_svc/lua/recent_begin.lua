-- Claim the load of an author's recent-tweets set (as build_begin.lua, for one author).
-- KEYS: 1 recent set   ARGV: 1 ttl seconds while loading
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], empty_set(INF), 'EX', ARGV[1])
return 1
