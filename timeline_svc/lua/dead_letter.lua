-- Move an event that failed every attempt to the dead-letter stream and acknowledge it, in one
-- step: it cannot be lost between the two, and it is moved once even if two consumers give up on
-- it (the second finds it no longer pending). Nothing is written unless the XADD succeeds.
-- KEYS: 1 events stream, 2 dead-letter stream, 3 attempts hash
-- ARGV: 1 consumer group, 2 event ID, 3.. the dead letter's fields and values
-- Returns the dead letter's ID, or false when the event was not pending.
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return id
