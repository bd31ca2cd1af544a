-- Write hydrated tweets into the tweet cache, never over a tombstone (NX). A tweet the tweets
-- service marked as changed a moment ago gets a tombstone instead: the copy in hand may be older
-- than the change, and so may one already cached.
-- KEYS: 1 .. n the cache keys, n+1 .. 2n the tweets' changed markers
-- ARGV: 1 ttl, 2 tombstone ttl, 3 tombstone, 4 .. n+3 the serialized tweets
local n = #KEYS / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[n + i]) == 1 then
    redis.call('SET', KEYS[i], ARGV[3], 'EX', ARGV[2])
  else
    redis.call('SET', KEYS[i], ARGV[3 + i], 'EX', ARGV[1], 'NX')
  end
end
return n
