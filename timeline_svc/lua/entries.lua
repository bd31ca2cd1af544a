-- Every entry of a timeline or recent set, newest first (tests and benchmarks look with it).
-- KEYS: 1 the set. Returns the entries (24 bytes each), none when the set is not there.
local s = redis.call('GET', KEYS[1])
if not s then return {} end
local result = {}
for _, e in ipairs(decode(s).list) do result[#result + 1] = wire(e[1], e[2], e[3]) end
return result
