-- Apply a relayed follow or unfollow to a warm reader. Events may arrive twice or out of order:
-- each edge keeps the sequence number of the last event applied (negative for an unfollow) and
-- older events are ignored.
-- KEYS: 1 timeline, 2 following, 3 edge versions, 4 followee's recent set
-- ARGV: 1 reader, 2 followee, 3 seq, 4 follow (1) or unfollow (0), 5 merge the recent set (1/0),
--       6 cap, 7 ttl, 8 reader's channel
-- Returns 'cold', 'stale', 'need_recent' (follow: load the recent set, or let a build end, first)
-- or 'ok'.
local tl, following, versions = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', following) == 0 then return 'cold' end
local reader, followee, seq = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seen = redis.call('HGET', versions, followee)
if seen and math.abs(tonumber(seen)) >= seq then return 'stale' end
local merge = ARGV[4] == '1' and ARGV[5] == '1' and redis.call('EXISTS', tl) == 1
-- A set still being built (horizon INF) would lift the timeline's horizon for good: wait for it.
if merge and (redis.call('EXISTS', KEYS[4]) == 0 or horizon(KEYS[4]) == INF or horizon(tl) == INF) then
  return 'need_recent'
end

local ttl = tonumber(ARGV[7])
if ARGV[4] == '1' then
  redis.call('HSET', versions, followee, seq)
  redis.call('SADD', following, followee)
  if merge then
    local h = horizon(KEYS[4])
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], 0, '+inf')) do
      local id, author, reply = parse(m)
      if id > h and reply_ok(following, reader, author, reply) then
        redis.call('ZADD', tl, score_of(m), m)
      end
    end
    raise_horizon(tl, h)
    trim(tl, tonumber(ARGV[6]))
  end
else
  redis.call('HSET', versions, followee, -seq)
  redis.call('SREM', following, followee)
  if redis.call('EXISTS', tl) == 1 then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', tl, 0, '+inf')) do
      local id, author, reply = parse(m)
      -- An unfollow takes out what only the follow let in (timeline_svc/visibility.py): the
      -- followee's tweets, and others' replies to them unless they are self-replies or the reader's.
      if author == followee or (reply == followee and author ~= followee and author ~= reader) then
        redis.call('ZREM', tl, m)
      end
    end
  end
end
redis.call('EXPIRE', versions, ttl)
redis.call('PUBLISH', ARGV[8], 'f')
return 'ok'
