"""The capacity model of docs/capacity.md, computed from a run's measured figures so that the
document quotes numbers the tool printed. The assumptions are the constants below; each line of
the printed model shows its formula with the values put in.

Reading of the seed: 20M daily active users; at the peak hour 2M to 4M of them are online and
each fetches the home timeline 4 to 10 times in that hour. The low case is 2M x 4, the high case
(the design point) 4M x 10, and a third case ten times the high one: 200M daily users, 40M at the
peak, to see what breaks first as Chirp grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.costs import per_core

DAU = 20_000_000
PEAK_USERS = (2_000_000, 4_000_000)
FETCHES_PER_PEAK_HOUR = (4, 10)
# The third case: the high one, GROWTH times over (daily users, peak users, warm timelines).
GROWTH = 10
CASES = ("low", "high", "x10")
# Every instance runs at most this busy at the peak: the rest absorbs bursts and a lost instance.
TARGET_UTILISATION = 0.5
# One Python process per core (`chirp serve`, or `chirp up --processes N` on an N-core host).
CORES_PER_INSTANCE = 1
# Warm timelines: every daily active user read within the warm period (7 days by default).
WARM_TIMELINES = DAU
# Home timelines fill up to this many entries over time (settings.timeline_size, unless the run
# set --timeline-size).
TIMELINE_CAP = 800
# Usable memory per Redis shard (a 32 GB node at about 75%), and the CPU budget of its one thread.
REDIS_SHARD_BYTES = 24 * 2**30
REDIS_SHARD_CORES = 0.5
# Share of peak reads that are cold (a new or returning user) and rebuild from PostgreSQL.
COLD_READ_SHARE = 0.05
# Every follower of an ordinary author is warm (an upper bound for the fan-out writes).
WARM_FOLLOWER_SHARE = 1.0
# Usable cores per PostgreSQL read replica (8 cores at 50%).
PG_REPLICA_CORES = 4.0
# Usable cores of the one PostgreSQL primary every write goes to (a 32-core host at 50%).
PG_PRIMARY_CORES = 16.0
DESIGN_MODE = "hybrid"
# A very large audience, to price pushing a celebrity's tweet.
BIG_AUDIENCE = 10_000_000


@dataclass(frozen=True)
class Line:
    name: str
    formula: str
    low: float
    high: float
    x10: float
    unit: str = ""


def fmt(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def model(results: dict[str, Any]) -> dict[str, Any] | None:
    """The capacity figures for the design mode, or None when the run lacks what they need."""
    modes = results.get("modes", {})
    mode_name = DESIGN_MODE if DESIGN_MODE in modes else next(iter(modes), None)
    figures = per_core(results).get(mode_name or "", {})
    if not mode_name or "rest" not in figures or "grpc" not in figures or "writes" not in figures:
        return None
    rest, grpc, writes = figures["rest"], figures["grpc"], figures["writes"]
    redis = modes[mode_name].get("redis", {})
    mix = results["config"]["mix"]
    data = results["dataset"]
    pull = per_core(results).get("pull", {}).get("rest")
    inputs = {
        "mode": mode_name,
        "rest_envoy_ms": rest["envoy_cpu_ms_per_request"],
        "rest_stack_ms": rest["stack_cpu_ms_per_request"],
        "grpc_stack_ms": grpc["stack_cpu_ms_per_request"],
        "read_pg_ms": rest["postgres_cpu_ms_per_request"],
        "read_redis_ms": rest["redis_cpu_ms_per_request"],
        "tweet_stack_ms": writes["stack_cpu_ms_per_tweet"],
        "tweet_pg_ms": writes["postgres_cpu_ms_per_tweet"],
        "tweet_redis_ms": writes["redis_cpu_ms_per_tweet"],
        "timelines_per_tweet": writes["timelines_written_per_tweet"],
        "warm_reader_bytes": redis.get("warm_reader_bytes"),
        "timeline_bytes": redis.get("timeline_bytes"),
        "timeline_entries": redis.get("timeline_entries"),
        "cold_pg_ms": pull["postgres_cpu_ms_per_request"] if pull else rest["postgres_cpu_ms_per_request"],
        "followers_per_author": data["follows"] / data["users"],
        "tweets_per_read": mix["tweet"] / mix["read"],
        "timeline_cap": results["config"].get("timeline_size") or TIMELINE_CAP,
    }
    if any(value is None for value in inputs.values()):
        return None
    return {"inputs": inputs, "lines": [line.__dict__ for line in _lines(inputs)]}


Pair = tuple[float, float, float]


def redis_ms_per_timeline_write(inputs: dict[str, Any]) -> float:
    """Redis CPU per timeline a tweet was pushed to: all of a tweet's Redis work over the timelines
    it reached (an overestimate)."""
    written = inputs["timelines_per_tweet"]
    return float(inputs["tweet_redis_ms"] / written) if written else 0.0


def _pair(low: float, high: float, x10: float) -> Pair:
    return (low, high, x10)


def _cases(values: Any) -> Pair:
    low, high, x10 = values
    return (low, high, x10)


PEAK_READS = _pair(
    PEAK_USERS[0] * FETCHES_PER_PEAK_HOUR[0] / 3600,
    PEAK_USERS[1] * FETCHES_PER_PEAK_HOUR[1] / 3600,
    GROWTH * PEAK_USERS[1] * FETCHES_PER_PEAK_HOUR[1] / 3600,
)
DAILY_USERS = _pair(DAU, DAU, GROWTH * DAU)


def _lines(i: dict[str, Any]) -> list[Line]:
    """Each quantity for the low and the high case; later lines use earlier ones."""
    lines: list[Line] = []

    def add(name: str, formula: str, values: Pair, unit: str = "") -> Pair:
        lines.append(Line(name, formula, values[0], values[1], values[2], unit))
        return values

    def each(values: Pair, scale: float) -> Pair:
        return _cases(v * scale for v in values)

    reads = add("peak timeline reads", "peak users x fetches per peak hour / 3,600 s", PEAK_READS, "/s")
    tweets = add(
        "peak tweets",
        f"reads x {i['tweets_per_read']:.4f} (the workload's tweets per read)",
        each(reads, i["tweets_per_read"]),
        "/s",
    )
    fanout = add(
        "fan-out writes",
        f"tweets x {i['followers_per_author']:.1f} followers per author (bench graph) x "
        f"{WARM_FOLLOWER_SHARE:.0%} warm",
        each(tweets, i["followers_per_author"] * WARM_FOLLOWER_SHARE),
        "/s",
    )
    auth_ms = max(0.0, i["rest_stack_ms"] - i["grpc_stack_ms"])
    gateway = add(
        "gateway cores",
        f"reads x ({i['rest_envoy_ms']:.2f} ms Envoy + ({i['rest_stack_ms']:.2f} - "
        f"{i['grpc_stack_ms']:.2f}) ms Python per REST read over a gRPC read)",
        each(reads, (i["rest_envoy_ms"] + auth_ms) / 1000),
    )
    timeline = add(
        "timeline cores (with the graph/tweets calls a read makes)",
        f"reads x {i['grpc_stack_ms']:.2f} ms (Python CPU per gRPC read)",
        each(reads, i["grpc_stack_ms"] / 1000),
    )
    writer = add(
        "tweets + fan-out worker cores",
        f"tweets x {i['tweet_stack_ms']:.2f} ms (Python CPU per tweet, fan-out included)",
        each(tweets, i["tweet_stack_ms"] / 1000),
    )
    for label, cores in (("gateway", gateway), ("timeline", timeline), ("tweets", writer)):
        add(
            f"{label} instances",
            f"cores / {TARGET_UTILISATION:.0%} utilisation / {CORES_PER_INSTANCE} core each, rounded up",
            _cases(_instances(c / TARGET_UTILISATION / CORES_PER_INSTANCE) for c in cores),
        )
    per_write_ms = redis_ms_per_timeline_write(i)
    redis_cores = add(
        "Redis cores",
        f"reads x {i['read_redis_ms']:.3f} ms + fan-out writes x {per_write_ms:.4f} ms "
        f"({i['tweet_redis_ms']:.3f} ms per tweet / {i['timelines_per_tweet']:.1f} timelines written)",
        _cases(
            r * i["read_redis_ms"] / 1000 + f * per_write_ms / 1000
            for r, f in zip(reads, fanout, strict=True)
        ),
    )
    per_entry = i["timeline_bytes"] / i["timeline_entries"] if i["timeline_entries"] else 0.0
    filled = i["warm_reader_bytes"] + per_entry * max(0.0, i["timeline_cap"] - i["timeline_entries"])
    memory = add(
        "Redis memory for warm timelines (GiB)",
        f"every daily user warm x {i['warm_reader_bytes']:,.0f} B measured per warm reader "
        f"({i['timeline_entries']:.0f} entries); high and x10: filled to {i['timeline_cap']} entries at "
        f"{per_entry:.0f} B each",
        _pair(
            DAILY_USERS[0] * i["warm_reader_bytes"] / 2**30,
            DAILY_USERS[1] * filled / 2**30,
            DAILY_USERS[2] * filled / 2**30,
        ),
    )
    add(
        "warm timelines one Redis server holds",
        f"{REDIS_SHARD_BYTES / 2**30:.0f} GiB / bytes per warm reader (as in the memory line)",
        _pair(
            REDIS_SHARD_BYTES / i["warm_reader_bytes"], REDIS_SHARD_BYTES / filled, REDIS_SHARD_BYTES / filled
        ),
    )
    add(
        "Redis Cluster masters",
        f"max(cores / {REDIS_SHARD_CORES}, GiB / {REDIS_SHARD_BYTES / 2**30:.0f}), rounded up",
        _cases(
            _instances(max(c / REDIS_SHARD_CORES, m * 2**30 / REDIS_SHARD_BYTES))
            for c, m in zip(redis_cores, memory, strict=True)
        ),
    )
    primary = add(
        "PostgreSQL primary cores",
        f"tweets x {i['tweet_pg_ms']:.2f} ms",
        each(tweets, i["tweet_pg_ms"] / 1000),
    )
    add(
        "share of one primary's budget",
        f"primary cores / {PG_PRIMARY_CORES:.0f} usable cores (every write goes to one server)",
        each(primary, 1 / PG_PRIMARY_CORES),
    )
    read_ms = (1 - COLD_READ_SHARE) * i["read_pg_ms"] + COLD_READ_SHARE * i["cold_pg_ms"]
    replica_cores = add(
        "PostgreSQL read cores",
        f"reads x ({1 - COLD_READ_SHARE:.0%} x {i['read_pg_ms']:.2f} ms warm + {COLD_READ_SHARE:.0%} x "
        f"{i['cold_pg_ms']:.2f} ms pulled)",
        each(reads, read_ms / 1000),
    )
    add(
        "PostgreSQL cores with Redis down (every read pulled)",
        f"reads x {i['cold_pg_ms']:.2f} ms",
        each(reads, i["cold_pg_ms"] / 1000),
    )
    add(
        f"Redis core-seconds to push one tweet to {BIG_AUDIENCE:,} warm followers",
        f"{BIG_AUDIENCE:,} x {per_write_ms:.4f} ms (why celebrities are merged at read time)",
        each((1.0, 1.0, 1.0), BIG_AUDIENCE * per_write_ms / 1000),
    )
    add(
        "PostgreSQL replicas",
        f"read cores / {PG_REPLICA_CORES:.0f} usable cores each, rounded up, + 1 spare",
        _cases(_instances(c / PG_REPLICA_CORES) + 1 for c in replica_cores),
    )
    return lines


def _instances(value: float) -> float:
    return float(max(1, math.ceil(value - 1e-9)))


def markdown(results: dict[str, Any], command: str) -> list[str]:
    found = results.get("capacity") or model(results)
    if not found:
        return []
    rows = [
        f"| {line['name']} | {line['formula']} | {fmt(line['low'])}{line['unit']} | "
        f"{fmt(line['high'])}{line['unit']} | {fmt(line['x10'])}{line['unit']} |"
        for line in found["lines"]
    ]
    return [
        f"## Capacity model for {DAU:,} daily active users ({found['inputs']['mode']} mode, figures above)",
        "",
        f"Low: {PEAK_USERS[0]:,} users at the peak x {FETCHES_PER_PEAK_HOUR[0]} fetches in the peak "
        f"hour; high: {PEAK_USERS[1]:,} x {FETCHES_PER_PEAK_HOUR[1]}; x{GROWTH}: {GROWTH * DAU:,} daily "
        f"users, {GROWTH * PEAK_USERS[1]:,} x {FETCHES_PER_PEAK_HOUR[1]}. Assumptions in bench/capacity.py; "
        "CPU per request as measured on this machine's cores (see docs/capacity.md).",
        "",
        f"| quantity | arithmetic | low | high | x{GROWTH} |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def first_bottleneck(lines: dict[str, dict[str, Any]], case: str) -> str:
    """What gives first at a case: the PostgreSQL primary when it is past its budget (every write
    goes to it, and only a bigger server grows it); else the largest fleet, which grows by adding
    servers (Redis too: the timeline code runs on a Redis Cluster)."""
    redis_servers = lines["Redis Cluster masters"][case]
    primary_share = lines["share of one primary's budget"][case]
    if primary_share > 1:
        return f"the PostgreSQL primary: every write goes to it, and it needs {primary_share:.1f}x its budget"
    fleets = {
        "the Redis Cluster": redis_servers,
        **{
            f"the {name} tier": lines[f"{name} instances"][case] for name in ("gateway", "timeline", "tweets")
        },
    }
    largest = max(fleets, key=lambda name: fleets[name])
    return (
        f"{largest}, the largest fleet at {fleets[largest]:,.0f} servers, which grows by adding "
        f"servers; Redis needs {redis_servers:,.0f} Cluster masters (one holds "
        f"{lines['warm timelines one Redis server holds'][case]:,.0f} warm timelines); the PostgreSQL "
        f"primary, which only a bigger server grows, is at {primary_share:.0%} of its budget"
    )
