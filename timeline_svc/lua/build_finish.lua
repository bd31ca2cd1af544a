-- Finish a build: the followees (but those a relayed unfollow event took out), the
-- tweets from PostgreSQL, the horizon, the cap, the TTLs.
-- KEYS: 1 timeline, 2 following, 3 edge versions
-- ARGV: 1 horizon, 2 cap, 3 ttl, 4 number of followees, then the followees, then the entries
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
local count = tonumber(ARGV[4])
for i = 5, 4 + count do
  -- An unfollow applied meanwhile wins; a follow's version may be older than the build (kept
  -- while the timeline was dropped and built again) and must not keep the followee out.
  local seen = redis.call('HGET', KEYS[3], ARGV[i])
  if not seen or tonumber(seen) > 0 then redis.call('SADD', KEYS[2], ARGV[i]) end
end
local set = decode(s)
local entries = {}
for i = 5 + count, #ARGV do entries[#entries + 1] = unwire(ARGV[i]) end
merge(set, entries)
set.h = ARGV[1]
trim_set(set, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], encode(set), 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
