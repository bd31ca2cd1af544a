-- Finish the load of a recent set: the tweets from PostgreSQL, the horizon, the cap, the TTL.
-- KEYS: 1 recent set   ARGV: 1 horizon, 2 cap, 3 ttl, then the entries
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
local set = decode(s)
local entries = {}
for i = 4, #ARGV do entries[#entries + 1] = unwire(ARGV[i]) end
merge(set, entries)
set.h = ARGV[1]
trim_set(set, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], encode(set), 'EX', ARGV[3])
return 1
