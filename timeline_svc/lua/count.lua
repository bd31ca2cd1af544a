-- Record an author's follower count (relayed with each follow and unfollow, or read from the
-- graph service with seq 0 when unknown) and keep the celebrity set in line with it.
-- KEYS: 1 counts, 2 count versions, 3 celebrities, 4 backfills pending
-- ARGV: 1 user, 2 count, 3 seq, 4 threshold (-1: no celebrities, the push mode)
-- Returns 'down' when the user's tweets must be backfilled into their followers' timelines (they
-- stopped being a celebrity; it stays 'down' until backfill_done.lua), else 'same'.
local user, seq = ARGV[1], tonumber(ARGV[3])
local seen = redis.call('HGET', KEYS[2], user)
if not seen or tonumber(seen) < seq then
  redis.call('HSET', KEYS[1], user, ARGV[2])
  redis.call('HSET', KEYS[2], user, seq)
end
local count = tonumber(redis.call('HGET', KEYS[1], user))
local threshold = tonumber(ARGV[4])
local celebrity = threshold >= 0 and count > threshold
if celebrity then
  redis.call('SADD', KEYS[3], user)
  redis.call('SREM', KEYS[4], user)
  return 'same'
end
if redis.call('SREM', KEYS[3], user) == 1 then redis.call('SADD', KEYS[4], user) end
if redis.call('SISMEMBER', KEYS[4], user) == 1 then return 'down' end
return 'same'
