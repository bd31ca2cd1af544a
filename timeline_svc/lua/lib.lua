-- Shared by every script (prepended by timeline_svc.storage). The layout, in short:
--   timeline and recent sets: sorted sets of "<tweet id, 19 digits>:<author>:<replied-to user or 0>",
--   scored by the tweet's millisecond (id >> 22). Members of one score sort by their string, and
--   zero-padded IDs sort as numbers, so (score, member) order is exactly the order of the IDs.
--   Every such set holds one sentinel at score -1, "h:<horizon>": the set holds every entry it
--   should with an ID above the horizon (entries at or below it may be missing). A set being
--   built has the horizon INF, so readers go to PostgreSQL until the build is done.
-- IDs are 64-bit and Lua numbers are doubles: IDs stay strings here and compare as strings.

local INF = '9999999999999999999'
local ZERO = '0000000000000000000'

local function horizon(key)
  local s = redis.call('ZRANGEBYSCORE', key, -1, -1, 'LIMIT', 0, 1)
  if #s == 0 then return INF end
  return string.sub(s[1], 3)
end

local function set_horizon(key, h)
  local old = redis.call('ZRANGEBYSCORE', key, -1, -1)
  for _, m in ipairs(old) do redis.call('ZREM', key, m) end
  redis.call('ZADD', key, -1, 'h:' .. h)
end

local function raise_horizon(key, h)
  if h > horizon(key) then set_horizon(key, h) end
end

-- Keep the newest `cap` entries; the horizon rises to the newest entry dropped.
local function trim(key, cap)
  local excess = redis.call('ZCARD', key) - 1 - cap
  if excess > 0 then
    local last = redis.call('ZRANGE', key, excess, excess)[1]
    redis.call('ZREMRANGEBYRANK', key, 1, excess)
    raise_horizon(key, string.sub(last, 1, 19))
  end
end

local function parse(member)
  return string.match(member, '^(%d+):(%d+):(%d+)$')
end

-- The reply rule of timeline_svc/visibility.py (reply_reaches), which owns it: a reply reaches
-- `reader` only if the reader follows the user it answers, is that user, or it answers its own
-- author (a thread). tests/timeline/test_reply_rule.py checks this against it.
local function reply_ok(following, reader, author, reply)
  return reply == '0' or reply == author or reply == reader
    or redis.call('SISMEMBER', following, reply) == 1
end

-- The score of a member or 19-digit ID: the ID's millisecond, id >> 22, computed exactly by long
-- division in base 10^9 (every intermediate stays below 2^53).
local function score_of(member)
  local hi = tonumber(string.sub(member, 1, 10))
  local lo = tonumber(string.sub(member, 11, 19))
  local qh = math.floor(hi / 4194304)
  local r = hi - qh * 4194304
  return qh * 1000000000 + math.floor((r * 1000000000 + lo) / 4194304)
end

local function add_members(key, members)
  for i = 1, #members, 2 do
    redis.call('ZADD', key, members[i], members[i + 1])
  end
end
