-- Finish the load of a recent set: the tweets from PostgreSQL, the horizon, the cap, the TTL.
-- KEYS: 1 recent set   ARGV: 1 horizon, 2 cap, 3 ttl, then score, member pairs
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
set_horizon(KEYS[1], ARGV[1])
trim(KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
