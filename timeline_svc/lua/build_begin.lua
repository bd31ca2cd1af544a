-- Claim the build of a cold timeline: create it empty with the horizon INF (readers go to
-- PostgreSQL meanwhile) and its following set, so that the workers write into both while the
-- build reads PostgreSQL. Nothing they write is lost, and what the build writes later only adds.
-- The following set holds the user 0 (no user has that ID) so that it exists while empty and
-- stays a set of integers (Redis keeps it as a compact intset).
-- KEYS: 1 timeline, 2 following, 3 edge versions   ARGV: 1 ttl seconds while building
-- Returns 1 when this caller builds, 0 when the timeline is already there or being built.
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[1], empty_set(INF), 'EX', ARGV[1])
redis.call('SADD', KEYS[2], '0')
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
