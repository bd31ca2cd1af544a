from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chirp_core.snowflake import SnowflakeGenerator, lowest_id_at, timestamp_of


def test_ids_are_unique_and_increasing_within_a_burst() -> None:
    generator = SnowflakeGenerator(node_id=5)
    ids = [generator.next_id() for _ in range(20_000)]  # several milliseconds' worth of sequence
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(0 < i < 2**63 for i in ids)


def test_nodes_never_collide_and_ids_carry_their_time() -> None:
    a, b = SnowflakeGenerator(1), SnowflakeGenerator(2)
    first = {a.next_id() for _ in range(1000)}
    second = {b.next_id() for _ in range(1000)}
    assert not first & second
    made = timestamp_of(max(first))
    assert abs(datetime.now(UTC) - made) < timedelta(seconds=5)
    assert lowest_id_at(made) <= max(first)


def test_node_id_is_bounded() -> None:
    with pytest.raises(ValueError):
        SnowflakeGenerator(1024)
