-- Whether an author is a celebrity: 1 yes, 0 no, -1 unknown (no follower count recorded yet).
-- KEYS: 1 counts, 2 celebrities   ARGV: 1 user
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
return redis.call('SISMEMBER', KEYS[2], ARGV[1])
