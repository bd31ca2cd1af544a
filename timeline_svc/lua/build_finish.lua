-- Finish a build: the followees (except those a relayed follow or unfollow already decided),
-- the newest tweets pulled from PostgreSQL, the horizon, the cap and the warm TTL.
-- KEYS: 1 timeline, 2 following, 3 edge versions
-- ARGV: 1 horizon, 2 cap, 3 ttl, 4 number of followees, then the followees, then score, member pairs
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local count = tonumber(ARGV[4])
for i = 5, 4 + count do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then redis.call('SADD', KEYS[2], ARGV[i]) end
end
for i = 5 + count, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
set_horizon(KEYS[1], ARGV[1])
trim(KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
