-- A former celebrity's recent tweets into one batch of their followers' warm timelines, with
-- each reader's reply rule (reply_ok, timeline_svc/visibility.py); the timeline's horizon rises
-- to the recent set's.
-- KEYS: 1 the recent set, 2 .. n+1 the timelines, n+2 .. 2n+1 their following sets
-- ARGV: 1 cap, 2 the former celebrity. Returns the timelines written, -1 while the set loads.
local rc = KEYS[1]
local n = (#KEYS - 1) / 2
local h = horizon(rc)
if h == INF then return -1 end
local entries = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', rc, 0, '+inf')) do
  local id, author, reply = parse(m)
  if id > h then entries[#entries + 1] = {m, score_of(m), author, reply} end
end
local cap = tonumber(ARGV[1])
local written = 0
for i = 2, n + 1 do
  local tl, following = KEYS[i], KEYS[i + n]
  if redis.call('EXISTS', tl) == 1 and redis.call('SISMEMBER', following, ARGV[2]) == 1 then
    local reader = string.match(tl, '(%d+)$')
    local floor = horizon(tl)
    for _, e in ipairs(entries) do
      if string.sub(e[1], 1, 19) > floor and reply_ok(following, reader, e[3], e[4]) then
        redis.call('ZADD', tl, e[2], e[1])
      end
    end
    raise_horizon(tl, h)
    trim(tl, cap)
    written = written + 1
  end
end
return written
