"""Time-ordered 64-bit IDs, Snowflake style: 41 bits of milliseconds, 10 of node, 12 of sequence."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQUENCE_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


class SnowflakeGenerator:
    """Unique, increasing IDs for one node. Up to 4,096 IDs per millisecond; past that it waits."""

    def __init__(self, node_id: int) -> None:
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node_id must be 0..{MAX_NODE}")
        self._node_id = node_id
        self._last_ms = -1
        self._sequence = 0
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            now = _now_ms()
            if now < self._last_ms:  # the clock stepped back: keep IDs increasing
                now = self._last_ms
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:
                    while now <= self._last_ms:
                        now = _now_ms()
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                ((now - EPOCH_MS) << (NODE_BITS + SEQUENCE_BITS))
                | (self._node_id << SEQUENCE_BITS)
                | (self._sequence)
            )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def timestamp_of(snowflake_id: int) -> datetime:
    """When an ID was made (to the millisecond)."""
    ms = (snowflake_id >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def lowest_id_at(moment: datetime) -> int:
    """The smallest ID any node could make at `moment`: a keyset bound for time ranges."""
    ms = int(moment.timestamp() * 1000)
    return max(0, ms - EPOCH_MS) << (NODE_BITS + SEQUENCE_BITS)
