-- Apply a relayed follow or unfollow to a warm reader. Events may arrive twice or out of order:
-- each edge keeps the sequence number of the last event applied (negative for an unfollow) and
-- older events are ignored.
-- KEYS: 1 timeline, 2 following, 3 edge versions, 4 followee's recent set (absent on a Redis
--       Cluster, where it lives in another slot: then ARGV 9 holds it, '' when there is none)
-- ARGV: 1 reader, 2 followee, 3 seq, 4 follow (1) or unfollow (0), 5 merge the recent set (1/0),
--       6 cap, 7 ttl, 8 reader's channel, 9 the recent set
-- Returns 'cold', 'stale', 'need_recent' (follow: load the recent set, or let a build end, first)
-- or 'ok'.
local tl, following, versions = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', following) == 0 then return 'cold' end
local reader, followee, seq = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seen = redis.call('HGET', versions, followee)
if seen and math.abs(tonumber(seen)) >= seq then return 'stale' end
local merging = ARGV[4] == '1' and ARGV[5] == '1' and redis.call('EXISTS', tl) == 1
local recent = nil
if merging then
  if KEYS[4] then recent = redis.call('GET', KEYS[4]) elseif ARGV[9] ~= '' then recent = ARGV[9] end
  -- A set still being built (horizon INF) would lift the timeline's horizon for good: wait for it.
  if not recent or horizon_of(recent) == INF or horizon(tl) == INF then return 'need_recent' end
end

local ttl = tonumber(ARGV[7])
if ARGV[4] == '1' then
  redis.call('HSET', versions, followee, seq)
  redis.call('SADD', following, followee)
  if merging then
    local rc = decode(recent)
    local set = decode(redis.call('GET', tl))
    local user = decimals()
    local entries = {}
    for _, e in ipairs(rc.list) do
      if id_lt(rc.h, e[1]) and reply_ok(following, reader, user(e[2]), e[3] == ZERO and '0' or user(e[3])) then
        entries[#entries + 1] = e
      end
    end
    merge(set, entries)
    raise(set, rc.h)
    trim_set(set, tonumber(ARGV[6]))
    store(tl, encode(set))
  end
else
  redis.call('HSET', versions, followee, -seq)
  redis.call('SREM', following, followee)
  local s = redis.call('GET', tl)
  if s then
    local set = decode(s)
    local user = decimals()
    local kept = {}
    for _, e in ipairs(set.list) do
      local author, reply = user(e[2]), e[3] == ZERO and '0' or user(e[3])
      -- An unfollow takes out what only the follow let in (timeline_svc/visibility.py): the
      -- followee's tweets, and others' replies to them unless they are self-replies or the reader's.
      if not (author == followee or (reply == followee and author ~= followee and author ~= reader)) then
        kept[#kept + 1] = e
      end
    end
    if #kept < #set.list then
      set.list = kept
      store(tl, encode(set))
    end
  end
end
redis.call('EXPIRE', versions, ttl)
redis.call('PUBLISH', ARGV[8], 'f')
return 'ok'
