-- A former celebrity's recent tweets into one batch of their followers' warm timelines, with
-- each reader's reply rule (reply_ok, timeline_svc/visibility.py); the timeline's horizon rises
-- to the recent set's.
-- KEYS: 1 the recent set, 2 .. n+1 the timelines, n+2 .. 2n+1 their following sets; on a Redis
--       Cluster, where the recent set lives in another slot, no recent set: ARGV 3 holds it
-- ARGV: 1 cap, 2 the former celebrity, 3 the recent set (a Redis Cluster)
-- Returns the timelines written, -1 while the set loads.
local first, r = 2, nil
if ARGV[3] then
  first, r = 1, ARGV[3]
else
  r = redis.call('GET', KEYS[1])
end
local n = (#KEYS - first + 1) / 2
if not r or horizon_of(r) == INF then return -1 end
local rc = decode(r)
local user = decimals()
local cap = tonumber(ARGV[1])
local written = 0
for i = first, first + n - 1 do
  local tl, following = KEYS[i], KEYS[i + n]
  local s = redis.call('GET', tl)
  if s and redis.call('SISMEMBER', following, ARGV[2]) == 1 then
    local reader = string.match(tl, '{(%d+)}$')
    local set = decode(s)
    local entries = {}
    for _, e in ipairs(rc.list) do
      if id_lt(rc.h, e[1]) and id_lt(set.h, e[1])
        and reply_ok(following, reader, user(e[2]), e[3] == ZERO and '0' or user(e[3])) then
        entries[#entries + 1] = e
      end
    end
    merge(set, entries)
    raise(set, rc.h)
    trim_set(set, cap)
    store(tl, encode(set))
    written = written + 1
  end
end
return written
