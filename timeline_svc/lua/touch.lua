-- Keep a live reader's timeline warm. KEYS: 1 timeline, 2 following, 3 edge versions
-- ARGV: 1 ttl. Returns 0 when the timeline is cold (it must be rebuilt), else 1.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = 1, 3 do refresh(KEYS[i], tonumber(ARGV[1])) end
return 1
