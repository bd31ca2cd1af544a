-- One page of a warm home timeline: the reader's timeline merged with the recent tweets of the
-- celebrities they follow, filtered by the follow and reply rules (timeline_svc/visibility.py's
-- in_home_timeline), with the cached tweets.
-- KEYS: 1 timeline, 2 following, 3 edge versions, 4 celebrities, 5 reader's last post (the tweets
--       service's key: a tweet ID)
-- ARGV: 1 reader, 2 max id (exclusive, 19 digits), 3 min id (exclusive, 19 digits), 4 want,
--       5 merge celebrities (1/0), 6 ttl seconds, 7 recent-set key prefix, 8 tweet cache prefix,
--       9 the tweets service's changed-marker prefix (a cached tweet with a marker is a miss)
-- Returns {'cold'} | {'missing', celebrity...} |
--   {'ok', horizon, last post not yet in the timeline or '', n, member x n, cached tweet x n}
local tl, following = KEYS[1], KEYS[2]
if redis.call('EXISTS', tl) == 0 or redis.call('EXISTS', following) == 0 then return {'cold'} end
local reader, max_id, min_id, want = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])
redis.call('EXPIRE', tl, ttl)
redis.call('EXPIRE', following, ttl)
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end

local sources = {{tl, false}}
local floor = horizon(tl)
if ARGV[5] == '1' then
  local missing = {}
  for _, celeb in ipairs(redis.call('SINTER', following, KEYS[4])) do
    local rc = ARGV[7] .. celeb
    if redis.call('EXISTS', rc) == 0 then
      missing[#missing + 1] = celeb
    else
      redis.call('EXPIRE', rc, ttl)
      sources[#sources + 1] = {rc, true}
      local h = horizon(rc)
      if h > floor then floor = h end
    end
  end
  if #missing > 0 then
    table.insert(missing, 1, 'missing')
    return missing
  end
end
local h = floor
if min_id > floor then floor = min_id end

local found, ids = {}, {}
local max_score = score_of(max_id) + 1
local min_score = math.max(0, score_of(floor) - 1)
for _, source in ipairs(sources) do
  local key, celebrity = source[1], source[2]
  local got, offset, chunk_size = 0, 0, want + 8
  local done = false
  while not done do
    local chunk = redis.call('ZREVRANGEBYSCORE', key, max_score, min_score, 'LIMIT', offset, chunk_size)
    if #chunk == 0 then break end
    offset = offset + #chunk
    for _, m in ipairs(chunk) do
      local id, author, reply = parse(m)
      if id <= floor then done = true break end
      if id < max_id and not found[id] then
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
          found[id] = m
          ids[#ids + 1] = id
          got = got + 1
          if got >= want then done = true break end
        end
      end
    end
    if #chunk < chunk_size then break end
  end
end
table.sort(ids, function(a, b) return a > b end)
local n = math.min(#ids, want)

local pending = ''
local last = redis.call('GET', KEYS[5])
if last and #last <= 19 then
  last = string.rep('0', 19 - #last) .. last
  if last > h then
    local s = score_of(last)
    local held = false
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', tl, s, s)) do
      if string.sub(m, 1, 19) == last then held = true break end
    end
    if not held then pending = last end
  end
end

local result = {'ok', h, pending, n}
for i = 1, n do result[#result + 1] = found[ids[i]] end
if n > 0 then
  local cache_keys, changed_keys = {}, {}
  for i = 1, n do
    local id = string.match(ids[i], '^0*(%d+)$')
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
