-- Add a new tweet to its author's recent set when the set exists, and tell the author's
-- channel (which the live streams of the author's followers listen to when they are a celebrity).
-- KEYS: 1 recent set   ARGV: 1 score, 2 member, 3 cap, 4 ttl, 5 author channel ('' for none)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  trim(KEYS[1], tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[5], 't:' .. ARGV[2]) end
return 1
