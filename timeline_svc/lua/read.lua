-- One page of a warm home timeline: the reader's timeline merged with the recent tweets of the
-- celebrities they follow, filtered by the follow and reply rules (timeline_svc/visibility.py's
-- in_home_timeline), with the cached tweets.
-- KEYS: 1 timeline, 2 following, 3 edge versions, 4 celebrities, 5 reader's last post (the tweets
--       service's key: a tweet ID)
-- ARGV: 1 reader, 2 max id (exclusive, 8 bytes), 3 min id (exclusive, 8 bytes), 4 want,
--       5 merge celebrities (1/0), 6 ttl seconds, 7 recent-set key prefix, 8 tweet cache prefix,
--       9 the tweets service's changed-marker prefix (a cached tweet with a marker is a miss)
-- Returns {'cold'} | {'missing', celebrity...} |
--   {'ok', horizon, last post not yet in the timeline or '', n, entry x n, cached tweet x n}
local tl, following = KEYS[1], KEYS[2]
local s = redis.call('GET', tl)
if not s or redis.call('EXISTS', following) == 0 then return {'cold'} end
local reader, max_id, min_id, want = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])
redis.call('EXPIRE', tl, ttl)
redis.call('EXPIRE', following, ttl)
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end

local sources = {{s, false}}
local floor = horizon_of(s)
if ARGV[5] == '1' then
  local missing = {}
  for _, celeb in ipairs(redis.call('SINTER', following, KEYS[4])) do
    local rc = ARGV[7] .. celeb
    local r = redis.call('GET', rc)
    if not r then
      missing[#missing + 1] = celeb
    else
      redis.call('EXPIRE', rc, ttl)
      sources[#sources + 1] = {r, true}
      local h = horizon_of(r)
      if id_lt(floor, h) then floor = h end
    end
  end
  if #missing > 0 then
    table.insert(missing, 1, 'missing')
    return missing
  end
end
local h = floor
if id_lt(floor, min_id) then floor = min_id end

local user = decimals()
local found, picked = {}, {}
for _, source in ipairs(sources) do
  local src, celebrity = source[1], source[2]
  local n = count_of(src)
  local got = 0
  local start = below(src, n, max_id)
  local rank = replies_before(src, start)
  for k = start, n - 1 do
    local id, author_id, is_reply = record(src, k)
    if not id_lt(floor, id) then break end
    local reply_id = ZERO
    if is_reply then
      reply_id = reply_at(src, n, rank)
      rank = rank + 1
    end
    if not found[id] then
      local author = user(author_id)
      local reply = is_reply and user(reply_id) or '0'
      local ok
      if celebrity then
        -- Merged only from followed celebrities' sets.
        ok = reply_ok(following, reader, author, reply)
      else
        -- in_home_timeline: the reader's own tweets always; others' only while followed,
        -- replies by the rule.
        ok = author == reader or (redis.call('SISMEMBER', following, author) == 1
          and reply_ok(following, reader, author, reply))
      end
      if ok then
        found[id] = true
        picked[#picked + 1] = {dec(id, true), wire(id, author_id, reply_id)}
        got = got + 1
        if got >= want then break end
      end
    end
  end
end
table.sort(picked, function(a, b) return a[1] > b[1] end)
local n = math.min(#picked, want)

local pending = ''
local last = redis.call('GET', KEYS[5])
if last and #last <= 19 and h ~= INF then
  local padded = string.rep('0', 19 - #last) .. last
  if padded > dec(h, true) then
    local id = bin(last)
    local count = count_of(s)
    local at = below(s, count, id)
    local held = false
    if at > 0 then
      local o = HEAD + (at - 1) * REC + 1
      held = string.sub(s, o, o + 7) == id
    end
    if not held then pending = last end
  end
end

local result = {'ok', h, pending, n}
for i = 1, n do result[#result + 1] = picked[i][2] end
if n > 0 then
  local cache_keys, changed_keys = {}, {}
  for i = 1, n do
    local id = string.match(picked[i][1], '^0*(%d+)$')
    cache_keys[i] = ARGV[8] .. id
    changed_keys[i] = ARGV[9] .. id
  end
  local cached = redis.call('MGET', unpack(cache_keys))
  local changed = redis.call('MGET', unpack(changed_keys))
  for i = 1, n do
    if changed[i] then result[#result + 1] = false else result[#result + 1] = cached[i] end
  end
end
return result
