"""Read your writes across replicas: where each user's latest write is in the primary's WAL.

A service that writes on a user's behalf (the caller of the RPC, or the user an internal call is
made for: chirp_core.rpc.on_behalf_of_var) marks the primary's WAL position after the commit,
`chirp:lsn:{user}` in Redis, for replica_max_lag_seconds. A stale read on that user's behalf
(chirp_core.db.Connections.read_stale) then goes only to a replica that has replayed past the
mark, else to the primary. After the bound every replica a read may use has the write anyway.

When Redis cannot say (down, slow), a read on a user's behalf goes to the primary: it never
trades the user's own write for availability. A mark that could not be written is logged; a read
in the next replica_max_lag_seconds may then miss that write.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("chirp.db")

KEY_PREFIX = "chirp:lsn:"
# Keep the larger of the stored and the new position: two writes of one user may mark out of order.
_MARK_MAX = """
local old = redis.call('GET', KEYS[1])
if old and tonumber(old) >= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class MarksUnavailable(Exception):
    """Redis did not answer: where the user's last write is, is unknown."""


def mark_key(user_id: int) -> str:
    return f"{KEY_PREFIX}{user_id}"


class WriteMarks:
    """The marks, on a Redis client of their own (close() closes it)."""

    def __init__(self, client: Any, ttl_seconds: float) -> None:
        self._redis = client
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._mark = client.register_script(_MARK_MAX)

    async def mark(self, user_id: int, lsn: int) -> None:
        # WAL positions stay below 2^53 for decades of writing, so Lua's numbers compare them.
        try:
            await self._mark(keys=[mark_key(user_id)], args=[lsn, self._ttl_ms])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("the write position of user %s was not recorded: %s", user_id, exc)

    async def position(self, user_id: int) -> int | None:
        """The WAL position of the user's last write of the lag bound, or None (none that recent)."""
        try:
            value = await self._redis.get(mark_key(user_id))
        except (RedisError, OSError, TimeoutError) as exc:
            raise MarksUnavailable(str(exc)) from exc
        return None if value is None else int(value)

    async def close(self) -> None:
        await self._redis.aclose()
