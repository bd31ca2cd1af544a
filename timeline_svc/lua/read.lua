-- One page of a warm home timeline: the reader's timeline merged with the recent tweets of the
-- celebrities they follow, filtered by the follow and reply rules (timeline_svc/visibility.py's
-- in_home_timeline), with the cached tweets.
-- KEYS: 1 timeline, 2 following, 3 edge versions, 4 reader's last post (the tweets service's key:
--       a tweet ID), 5 celebrities (merge mode 1 only)
-- ARGV: 1 reader, 2 max id (exclusive, 8 bytes), 3 min id (exclusive, 8 bytes), 4 want,
--       5 merge celebrities: 0 no, 1 the followed celebrities' recent sets read here, 2 the sets
--       given from ARGV[10] on (a Redis Cluster, where they live in other slots),
--       6 ttl seconds, 7 recent-set key prefix, 8 tweet cache prefix ('': the caller reads the
--       cache), 9 the tweets service's changed-marker prefix (a cached tweet with a marker is a miss)
-- Keys built here carry their ID as a hash tag: prefix .. '{' .. id .. '}'.
-- Returns {'cold'} | {'missing', celebrity...} |
--   {'ok', horizon, last post not yet in the timeline or '', n, entry x n, cached tweet x n}
local tl, following = KEYS[1], KEYS[2]
local s = redis.call('GET', tl)
if not s or redis.call('EXISTS', following) == 0 then return {'cold'} end
local reader, max_id, min_id, want = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])
refresh(tl, ttl)
refresh(following, ttl)
refresh(KEYS[3], ttl)

local sources = {{s, false}}
local floor = horizon_of(s)
if ARGV[5] == '2' then
  for i = 10, #ARGV do
    sources[#sources + 1] = {ARGV[i], true}
    local h = horizon_of(ARGV[i])
    if id_lt(floor, h) then floor = h end
  end
elseif ARGV[5] == '1' then
  local missing = {}
  for _, celeb in ipairs(redis.call('SINTER', following, KEYS[5])) do
    local rc = ARGV[7] .. '{' .. celeb .. '}'
    local r = redis.call('GET', rc)
    if not r then
      missing[#missing + 1] = celeb
    else
      refresh(rc, ttl)
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

-- Records are read in place with struct.unpack: IDs as two 32-bit halves, compared as id_lt does
-- (Redis sets LC_COLLATE from its environment, so binary strings are never compared with <), and
-- turned into decimal text only for the users (remembered, as is whether the reader follows each)
-- and for the picked entries' cache keys. One source is newest first already: no sort.
local names, followed = {}, {}
local function name(h, l)
  local t = names[h]
  if not t then
    t = {}
    names[h] = t
  end
  local d = t[l]
  if not d then
    d = decimal(h, l)
    t[l] = d
  end
  return d
end
local function follows(u)
  local f = followed[u]
  if f == nil then
    f = redis.call('SISMEMBER', following, u) == 1
    followed[u] = f
  end
  return f
end
local fh, fl = struct.unpack('>I4I4', floor)
local found, his, los, wires = {}, {}, {}, {}
local count = 0
for _, source in ipairs(sources) do
  local src, celebrity = source[1], source[2]
  local n = count_of(src)
  local got = 0
  local start = below(src, n, max_id)
  local rank = replies_before(src, start)
  for o = HEAD + start * REC + 1, HEAD + n * REC, REC do
    local ih, il, ah, al = struct.unpack('>I4I4I4I4', src, o)
    if ih < fh or (ih == fh and il <= fl) then break end
    local id = string.sub(src, o, o + 7)
    if not found[id] then
      local wire, reply
      if ah >= 2147483648 then
        ah = ah - 2147483648
        local ro = HEAD + n * REC + rank * REPLY + 1
        rank = rank + 1
        reply = name(struct.unpack('>I4I4', src, ro))
        wire = id .. struct.pack('>I4', ah) .. string.sub(src, o + 12, o + 15) .. string.sub(src, ro, ro + 7)
      else
        reply = '0'
        wire = string.sub(src, o, o + 15) .. ZERO
      end
      local author = name(ah, al)
      local ok
      if celebrity then
        -- Merged only from followed celebrities' sets.
        ok = reply_ok(following, reader, author, reply, follows)
      else
        -- in_home_timeline: the reader's own tweets always; others' only while followed,
        -- replies by the rule.
        ok = author == reader or (follows(author) and reply_ok(following, reader, author, reply, follows))
      end
      if ok then
        found[id] = true
        count = count + 1
        his[count], los[count], wires[count] = ih, il, wire
        got = got + 1
        if got >= want then break end
      end
    elseif ah >= 2147483648 then
      rank = rank + 1
    end
  end
end
local n = math.min(count, want)
local order = nil
if #sources > 1 then
  -- Several sources are merged by ID (each ID is picked once).
  order = {}
  for i = 1, count do order[i] = i end
  table.sort(order, function(a, b) return his[a] > his[b] or (his[a] == his[b] and los[a] > los[b]) end)
end

local pending = ''
local last = redis.call('GET', KEYS[4])
if last and #last <= 19 and h ~= INF then
  local padded = string.rep('0', 19 - #last) .. last
  if padded > dec(h, true) then
    local id = bin(last)
    local at = below(s, count_of(s), id)
    local held = false
    if at > 0 then
      local o = HEAD + (at - 1) * REC + 1
      held = string.sub(s, o, o + 7) == id
    end
    if not held then pending = last end
  end
end

local result = {'ok', h, pending, n}
if n > 0 and ARGV[8] == '' then
  for i = 1, n do
    local k = order and order[i] or i
    result[4 + i] = wires[k]
    result[4 + n + i] = false
  end
elseif n > 0 then
  local cache_keys, changed_keys = {}, {}
  for i = 1, n do
    local k = order and order[i] or i
    result[4 + i] = wires[k]
    local id = decimal(his[k], los[k])
    cache_keys[i] = ARGV[8] .. '{' .. id .. '}'
    changed_keys[i] = ARGV[9] .. '{' .. id .. '}'
  end
  local cached = redis.call('MGET', unpack(cache_keys))
  local changed = redis.call('MGET', unpack(changed_keys))
  for i = 1, n do
    if changed[i] then result[4 + n + i] = false else result[4 + n + i] = cached[i] end
  end
end
return result
