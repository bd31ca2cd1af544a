-- Shared by every script (prepended by timeline_svc.storage). The layout, in short:
--   A timeline or recent set is one Redis string of fixed-size binary records, newest first:
--     header   8 bytes: the horizon (an ID, big-endian), 2 bytes: the number of records n
--     records  n x 16 bytes: tweet ID (8, big-endian), author (8, big-endian; its top bit is set
--              when the tweet is a reply)
--     replies  8 bytes per reply among the records, in their order: the replied-to user
--   The set holds every entry it should with an ID above the horizon (entries at or below it may
--   be missing). A set being built has the horizon INF, so readers go to PostgreSQL until the
--   build is done. IDs are below 2^63, so the top bit of an author ID is free.
--   Between Python and these scripts an entry travels as 24 bytes: tweet ID, author, replied-to
--   user (0 when none), each 8 bytes big-endian (timeline_svc.keys.timeline_member).
-- IDs are 64-bit and Lua numbers are doubles, and Lua compares strings by the locale's collation:
-- binary IDs are compared as two 32-bit halves (id_lt), and turned into decimal text (dec) only
-- for the keys and sets that hold them that way (the follow sets, the tweet cache).

local INF = string.rep('\255', 8)
local ZERO = string.rep('\0', 8)
local HEAD = 10
local REC = 16
local REPLY = 8

local function id_lt(a, b)
  local ah, al = struct.unpack('>I4I4', a)
  local bh, bl = struct.unpack('>I4I4', b)
  return ah < bh or (ah == bh and al < bl)
end

-- An ID (below 2^63) given as its two 32-bit halves, as decimal text; `padded`: 19 digits
-- (comparable as text). Long division by 10^9 of the ID as a 32-bit and two 16-bit digits: every
-- step stays below 2^53 and each quotient below 2^17, so x % 10^9 (x - floor(x / 10^9) * 10^9) is
-- exact; string.format's %d prints a number as a C long (64 bits): the quotient is below 10^10.
local function decimal(top, low, padded)
  local d = low % 65536
  local c = (low - d) / 65536
  local r = top % 1000000000
  local q1 = (top - r) / 1000000000
  local x = r * 65536 + c
  r = x % 1000000000
  local q2 = (x - r) / 1000000000
  x = r * 65536 + d
  r = x % 1000000000
  local high = (q1 * 65536 + q2) * 65536 + (x - r) / 1000000000
  if padded then return string.format('%010d%09d', high, r) end
  if high > 0 then return string.format('%d%09d', high, r) end
  return string.format('%d', r)
end

-- An 8-byte ID (below 2^63) as decimal text (decimal's).
local function dec(id, padded)
  local x, low = struct.unpack('>I4I4', id)
  return decimal(x, low, padded)
end

-- Decimal text (up to 19 digits) as an 8-byte ID.
local function bin(text)
  local l = {0, 0, 0, 0}
  for i = 1, #text do
    local carry = string.byte(text, i) - 48
    for k = 4, 1, -1 do
      local v = l[k] * 10 + carry
      carry = math.floor(v / 65536)
      l[k] = v - carry * 65536
    end
  end
  return struct.pack('>I2I2I2I2', l[1], l[2], l[3], l[4])
end

local function empty_set(h)
  return h .. struct.pack('>I2', 0)
end

local function horizon_of(s)
  return string.sub(s, 1, 8)
end

local function horizon(key)
  local s = redis.call('GET', key)
  if not s then return INF end
  return horizon_of(s)
end

local function count_of(s)
  return (struct.unpack('>I2', s, 9))
end

-- Record k (0-based) of s: its ID, author, and whether it is a reply.
local function record(s, k)
  local o = HEAD + k * REC + 1
  local b = string.byte(s, o + 8)
  if b >= 128 then
    return string.sub(s, o, o + 7), string.char(b - 128) .. string.sub(s, o + 9, o + 15), true
  end
  return string.sub(s, o, o + 7), string.sub(s, o + 8, o + 15), false
end

-- How many of the first k records (0-based: records 0 .. k-1) are replies.
local function replies_before(s, k)
  local r = 0
  for i = 0, k - 1 do
    if string.byte(s, HEAD + i * REC + 9) >= 128 then r = r + 1 end
  end
  return r
end

-- The user the reply with this rank (0-based, among the replies) answers.
local function reply_at(s, n, rank)
  local o = HEAD + n * REC + rank * REPLY + 1
  return string.sub(s, o, o + 7)
end

-- The first record (0-based) whose ID is below `id`, or n.
local function below(s, n, id)
  local ih, il = struct.unpack('>I4I4', id)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local h, l = struct.unpack('>I4I4', s, HEAD + mid * REC + 1)
    if h < ih or (h == ih and l < il) then hi = mid else lo = mid + 1 end
  end
  return lo
end

-- A decoded set: {h = horizon, list = {{id, author, reply}, ...} newest first}.
local function decode(s)
  local n = count_of(s)
  local list, rank = {}, 0
  for k = 0, n - 1 do
    local id, author, is_reply = record(s, k)
    local reply = ZERO
    if is_reply then
      reply = reply_at(s, n, rank)
      rank = rank + 1
    end
    list[k + 1] = {id, author, reply}
  end
  return {h = horizon_of(s), list = list}
end

local function packed(e)
  local author = e[2]
  if e[3] ~= ZERO then author = string.char(string.byte(author, 1) + 128) .. string.sub(author, 2) end
  return e[1] .. author
end

local function encode(set)
  local records, replies = {}, {}
  for i, e in ipairs(set.list) do
    records[i] = packed(e)
    if e[3] ~= ZERO then replies[#replies + 1] = e[3] end
  end
  return set.h .. struct.pack('>I2', #set.list) .. table.concat(records) .. table.concat(replies)
end

-- A 24-byte entry as {id, author, reply}, and back.
local function unwire(m)
  return {string.sub(m, 1, 8), string.sub(m, 9, 16), string.sub(m, 17, 24)}
end

local function wire(id, author, reply)
  return id .. author .. reply
end

-- Add entries (a list of {id, author, reply}, any order) to a decoded set; an ID already there
-- stays as it is.
local function merge(set, entries)
  local have = {}
  for _, e in ipairs(set.list) do have[e[1]] = true end
  local added = false
  for _, e in ipairs(entries) do
    if not have[e[1]] then
      have[e[1]] = true
      set.list[#set.list + 1] = e
      added = true
    end
  end
  if added then table.sort(set.list, function(a, b) return id_lt(b[1], a[1]) end) end
end

local function raise(set, h)
  if id_lt(set.h, h) then set.h = h end
end

-- Keep the newest `cap` entries; the horizon rises to the newest entry dropped.
local function trim_set(set, cap)
  local n = #set.list
  if n > cap then
    raise(set, set.list[cap + 1][1])
    for i = n, cap + 1, -1 do set.list[i] = nil end
  end
end

-- Keep a read key warm for `ttl` seconds, writing only when a hundredth of the TTL has passed
-- since it was last set: a warm read then writes nothing (no append-only-file or replica traffic).
local function refresh(key, ttl)
  local left = redis.call('TTL', key)
  if left ~= -2 and left < ttl - math.ceil(ttl / 100) then redis.call('EXPIRE', key, ttl) end
end

local function store(key, s)
  redis.call('SET', key, s, 'KEEPTTL')
end

-- Insert one entry into the set held in s (the fan-out's hot path: no decoding), keeping the
-- newest `cap`. Returns the new string, or nil when the entry was already there.
local function insert(s, e, cap)
  local n = count_of(s)
  local at = below(s, n, e[1])
  -- `at` is the first record below the new ID: the one before it may be the same tweet.
  if at > 0 then
    local o = HEAD + (at - 1) * REC + 1
    if string.sub(s, o, o + 7) == e[1] then return nil end
  end
  local body_end = HEAD + n * REC
  local split = HEAD + at * REC
  local h = horizon_of(s)
  local replies = string.sub(s, body_end + 1)
  if e[3] ~= ZERO then
    local cut = replies_before(s, at) * REPLY
    replies = string.sub(replies, 1, cut) .. e[3] .. string.sub(replies, cut + 1)
  end
  local records = string.sub(s, HEAD + 1, split) .. packed(e) .. string.sub(s, split + 1, body_end)
  n = n + 1
  if n > cap then
    -- Drop the oldest records, and their replies (the last ones).
    local dropped = string.sub(records, cap * REC + 1)
    records = string.sub(records, 1, cap * REC)
    local newest_dropped = string.sub(dropped, 1, 8)
    if id_lt(h, newest_dropped) then h = newest_dropped end
    local gone = 0
    for k = 0, n - cap - 1 do
      if string.byte(dropped, k * REC + 9) >= 128 then gone = gone + 1 end
    end
    replies = string.sub(replies, 1, #replies - gone * REPLY)
    n = cap
  end
  return h .. struct.pack('>I2', n) .. records .. replies
end

-- Remove the entry with this ID; nil when it is not there.
local function remove_id(s, id)
  local set = decode(s)
  for i, e in ipairs(set.list) do
    if e[1] == id then
      table.remove(set.list, i)
      return encode(set)
    end
  end
  return nil
end

-- The reply rule of timeline_svc/visibility.py (reply_reaches), which owns it: a reply reaches
-- `reader` only if the reader follows the user it answers, is that user, or it answers its own
-- author (a thread). tests/timeline/test_reply_rule.py checks this against it. The users are
-- decimal text, as the follow sets hold them ('0': not a reply). `follows` (optional): a function
-- telling whether the reader follows a user (e.g. remembering SISMEMBER's answers).
local function reply_ok(following, reader, author, reply, follows)
  if reply == '0' or reply == author or reply == reader then return true end
  if follows then return follows(reply) end
  return redis.call('SISMEMBER', following, reply) == 1
end

-- dec, remembered for the users a script meets many times.
local function decimals()
  local known = {}
  return function(id)
    local d = known[id]
    if not d then
      d = dec(id)
      known[id] = d
    end
    return d
  end
end
