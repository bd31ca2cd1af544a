"""Measurements beside the load: logins, first (cold) reads, fan-out lag, PostgreSQL statements
per read, Redis memory and fan-out queue depth."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import psycopg
import redis.asyncio

from bench.progress import Progress
from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp_core.rpc import BALANCED_SERVICE_CONFIG, USER_ID_HEADER

# A connection of the channel's own to each address of the target (every worker, when the stack
# lists them), the calls spread round robin over those that serve, as the services' own channels do.
LOCAL_POOL = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.service_config", BALANCED_SERVICE_CONFIG),
]


def _as(user_id: int) -> tuple[tuple[str, str], ...]:
    return ((USER_ID_HEADER, str(user_id)),)


async def login(
    url: str, accounts: Sequence[tuple[int, str]], password: str, concurrency: int = 8
) -> list[tuple[int, str]]:
    """Log each (user_id, handle) in through the gateway; returns (user_id, token) pairs."""
    gate = asyncio.Semaphore(concurrency)
    bar = Progress("logging in", len(accounts), unit="accounts")

    async def one(http: aiohttp.ClientSession, user_id: int, handle: str) -> tuple[int, str]:
        async with gate, http.post("/sessions", json={"handle": handle, "password": password}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"log-in of {handle} failed: {response.status} {body}")
        bar.advance()
        return user_id, str(body["token"])

    async with aiohttp.ClientSession(base_url=url) as http:
        tokens = await asyncio.gather(*(one(http, user_id, handle) for user_id, handle in accounts))
    bar.close()
    return list(tokens)


async def first_reads(
    timeline: str, user_ids: Sequence[int], *, limit: int, concurrency: int, label: str
) -> tuple[list[float], int]:
    """One home-timeline read per user over gRPC: latencies (s) of the successes, error count."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    bar = Progress(label, len(user_ids), unit="reads")
    async with grpc.aio.insecure_channel(timeline, options=LOCAL_POOL) as channel:
        stub = timeline_pb2_grpc.TimelineServiceStub(channel)

        async def one(user_id: int) -> None:
            nonlocal errors
            async with gate:
                began = time.perf_counter()
                try:
                    request = timeline_pb2.GetHomeTimelineRequest(user_id=user_id, limit=limit)
                    await stub.GetHomeTimeline(request, metadata=_as(user_id), timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                else:
                    latencies.append(time.perf_counter() - began)
                bar.advance()

        await asyncio.gather(*(one(user_id) for user_id in user_ids))
    bar.close()
    return latencies, errors


@dataclass(frozen=True)
class LagProbe:
    author_id: int
    celebrity: bool
    followers: tuple[int, ...]


@dataclass
class LagSample:
    celebrity: bool
    # One per polled follower: seconds from CreateTweet answering to the tweet in that follower's
    # first page (the answer of the read that saw it), or None when it never showed.
    lags: list[float | None]


async def fanout_lag(
    tweets: str,
    timeline: str,
    probes: Sequence[LagProbe],
    *,
    limit: int,
    poll: float,
    give_up: float,
    gap: float,
) -> list[LagSample]:
    """Post each probe's tweet over gRPC and poll its followers' first pages until it shows."""
    samples: list[LagSample] = []
    bar = Progress("fan-out lag probes", len(probes), unit="tweets")
    async with (
        grpc.aio.insecure_channel(tweets, options=LOCAL_POOL) as tweets_channel,
        grpc.aio.insecure_channel(timeline, options=LOCAL_POOL) as timeline_channel,
    ):
        writer = tweets_pb2_grpc.TweetServiceStub(tweets_channel)
        reader = timeline_pb2_grpc.TimelineServiceStub(timeline_channel)

        async def seen_by(follower: int, tweet_id: int, posted: float) -> float | None:
            request = timeline_pb2.GetHomeTimelineRequest(user_id=follower, limit=limit)
            while time.perf_counter() - posted < give_up:
                page = await reader.GetHomeTimeline(request, metadata=_as(follower), timeout=10)
                if any(tweet.tweet_id == tweet_id for tweet in page.tweets):
                    return time.perf_counter() - posted
                await asyncio.sleep(poll)
            return None

        for number, probe in enumerate(probes):
            request = tweets_pb2.CreateTweetRequest(
                user_id=probe.author_id, content=f"fan-out lag probe {number}"
            )
            tweet = await writer.CreateTweet(request, metadata=_as(probe.author_id), timeout=10)
            posted = time.perf_counter()
            lags = await asyncio.gather(*(seen_by(f, tweet.tweet_id, posted) for f in probe.followers))
            samples.append(LagSample(probe.celebrity, list(lags)))
            bar.advance()
            await asyncio.sleep(gap)
    bar.close()
    return samples


class StatementCounter:
    """Statements the database ran, from pg_stat_statements when the server preloads it (every
    statement counted as it ends), else transactions from pg_stat_database (the services read in
    autocommit, so a read statement is a transaction; those counters reach the view only when a
    backend flushes its statistics, up to ten seconds late, hence `settle`)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        with psycopg.connect(database_url, autocommit=True) as conn:
            found = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
            ).fetchone()
            preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()
        self.statements = bool(found and found[0]) and "pg_stat_statements" in str(preloaded)
        self.method = (
            "pg_stat_statements calls in this database (statements of the services)"
            if self.statements
            else "pg_stat_database xact_commit + xact_rollback (autocommit statements)"
        )
        self.settle = 0.0 if self.statements else 11.0

    def snapshot(self) -> tuple[float, dict[str, int]]:
        """(monotonic time, {statement text: calls}); the counter's own queries are left out."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            if self.statements:
                rows = conn.execute(
                    "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                    " WHERE d.datname = current_database() AND query NOT LIKE '%pg_stat%'"
                    " AND query NOT LIKE 'SHOW %' AND query NOT LIKE '%pg_extension%'"
                ).fetchall()
                calls: dict[str, int] = {}
                for query, count in rows:
                    calls[str(query)] = calls.get(str(query), 0) + int(count)
            else:
                row = conn.execute(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                    " WHERE datname = current_database()"
                ).fetchone()
                calls = {"transactions": int(row[0]) if row else 0}
        return time.monotonic(), calls


def statement_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {query: after[query] - before.get(query, 0) for query in after}
    return {query: count for query, count in delta.items() if count > 0}


async def redis_memory(url: str) -> dict[str, int]:
    client = redis.asyncio.Redis.from_url(url)
    try:
        info = await client.info("memory")
        keys = await client.dbsize()
    finally:
        await client.aclose()
    return {
        "used_memory": int(info["used_memory"]),
        "used_memory_dataset": int(info.get("used_memory_dataset", 0)),
        "keys": int(keys),
    }


_DIGITS = re.compile(rb"\d{3,}")


async def key_families(url: str, *, sample: int = 200) -> list[dict[str, Any]]:
    """Keys grouped by name with IDs blanked (chirp:home:{id}), each with its count, type, and
    the mean MEMORY USAGE and mean length (members / entries) of up to `sample` of its keys."""
    client = redis.asyncio.Redis.from_url(url)
    families: dict[bytes, list[bytes]] = {}
    try:
        async for key in client.scan_iter(count=1000):
            families.setdefault(_DIGITS.sub(b"{id}", key), []).append(key)
        found: list[dict[str, Any]] = []
        for family, keys in families.items():
            picked = keys[:sample]
            kind_raw = await client.type(picked[0])
            kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
            sizes = [int(await client.memory_usage(key, samples=0) or 0) for key in picked]
            lengths = [await _length(client, key, kind) for key in picked]
            found.append(
                {
                    "family": family.decode(errors="replace"),
                    "type": kind,
                    "keys": len(keys),
                    "mean_bytes": sum(sizes) / len(sizes),
                    "mean_length": sum(lengths) / len(lengths),
                    "total_bytes_estimate": sum(sizes) / len(sizes) * len(keys),
                }
            )
    finally:
        await client.aclose()
    return sorted(found, key=lambda item: -float(item["total_bytes_estimate"]))


async def _length(client: redis.asyncio.Redis, key: bytes, kind: str) -> int:
    if kind == "zset":
        return int(await client.zcard(key))
    if kind == "list":
        return int(await client.llen(key))
    if kind == "hash":
        return int(await client.hlen(key))
    if kind == "set":
        return int(await client.scard(key))
    if kind == "stream":
        return int(await client.xlen(key))
    return 1


async def fanout_depth(url: str, stream: str) -> int | None:
    """Events of `stream` not yet acknowledged by its consumer groups (pending plus not yet
    delivered, the latter counted up to 10,000); None when there is no stream or group."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        try:
            groups = await client.xinfo_groups(stream)
        except redis.ResponseError:
            return None
        if not groups:
            return None
        depth = 0
        for group in groups:
            last = group["last-delivered-id"]
            last = last.decode() if isinstance(last, bytes) else str(last)
            undelivered = await client.xrange(stream, min=f"({last}", max="+", count=10_000) or []
            depth = max(depth, int(group["pending"]) + len(undelivered))
        return depth
    finally:
        await client.aclose()


# Entries of a key by its type; a string (or an unknown type) has no entry count.
_ENTRY_COUNTS = {"zset": "ZCARD", "list": "LLEN", "set": "SCARD", "hash": "HLEN", "stream": "XLEN"}


def _as_keys(found: object) -> list[str]:
    """A key-naming method's answer as a list of keys: one key, or several."""
    if isinstance(found, str | bytes):
        return [found.decode() if isinstance(found, bytes) else found]
    if isinstance(found, list | tuple | set | frozenset):
        return [str(key) for key in found]
    raise TypeError(f"expected a Redis key or keys, got {found!r}")


def timeline_store(client: redis.asyncio.Redis, namespace: str) -> Any:
    """The timeline service's own TimelineStore, for its key names: built with the arguments its
    constructor takes among the ones known here."""
    import inspect

    from timeline_svc.storage import TimelineStore

    known: dict[str, Any] = {"namespace": namespace, "cap": 800, "ttl_seconds": 86_400}
    accepted = inspect.signature(TimelineStore).parameters
    return TimelineStore(client, **{name: value for name, value in known.items() if name in accepted})


async def cold_readers(url: str, namespace: str, readers: Sequence[int]) -> set[int]:
    """The readers without a home timeline in Redis (TimelineStore.timeline_key's keys)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        store = timeline_store(client, namespace)
        pipe = client.pipeline(transaction=False)
        for reader in readers:
            pipe.exists(*_as_keys(store.timeline_key(reader)))
        found = await pipe.execute()
    finally:
        await client.aclose()
    return {reader for reader, exists in zip(readers, found, strict=True) if not exists}


async def warm_timeline_bytes(url: str, namespace: str, readers: Sequence[int]) -> dict[str, Any]:
    """MEMORY USAGE (exact: SAMPLES 0) of each reader's home timeline keys and follow-set keys,
    named by the timeline service's TimelineStore.timeline_key and following_key; the timeline's
    entries as TimelineStore.entries reads them, the follow set's members by key type. Readers
    without a timeline key (not warm) are counted apart, not averaged in."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        store = timeline_store(client, namespace)
        parts = {"timeline": store.timeline_key, "following": store.following_key}
        # The follow versions (when the store keeps them) belong to a warm reader too.
        if callable(getattr(store, "versions_key", None)):
            parts["versions"] = store.versions_key
        sizes: dict[str, list[int]] = {name: [] for name in parts}
        entries: dict[str, list[int]] = {"timeline": [], "following": []}
        cold = 0
        example: list[str] = []
        for reader in readers:
            keys = {name: _as_keys(key_of(reader)) for name, key_of in parts.items()}
            if not example:
                example = [*keys["timeline"], *keys["following"]]
            pipe = client.pipeline(transaction=False)
            for names in keys.values():
                for key in names:
                    pipe.memory_usage(key, samples=0)
                    pipe.type(key)
            answers = await pipe.execute()
            found: dict[str, list[tuple[str, int | None, str]]] = {}
            position = 0
            for name, names in keys.items():
                found[name] = []
                for key in names:
                    used, kind = answers[position], answers[position + 1]
                    position += 2
                    found[name].append((key, used, kind.decode() if isinstance(kind, bytes) else str(kind)))
            if not any(used for _, used, _ in found["timeline"]):
                cold += 1
                continue
            for name, rows in found.items():
                sizes.setdefault(name, []).append(sum(used or 0 for _, used, _ in rows))
            entries["timeline"].append(await _timeline_entries(store, client, reader, found["timeline"]))
            entries["following"].append(await _entries(client, found["following"]))
    finally:
        await client.aclose()
    warm = len(sizes["timeline"])

    def mean(values: list[int]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "readers": len(readers),
        "warm": warm,
        "not_warm": cold,
        "keys_of_first_reader": example,
        "bytes": mean([a + b for a, b in zip(sizes["timeline"], sizes["following"], strict=True)]),
        "timeline_bytes": mean(sizes["timeline"]),
        "following_bytes": mean(sizes["following"]),
        "timeline_entries": mean(entries["timeline"]),
        "following_entries": mean(entries["following"]),
        "reader_bytes": mean([sum(values) for values in zip(*sizes.values(), strict=True)]),
    }


async def _timeline_entries(
    store: Any, client: redis.asyncio.Redis, reader: int, rows: list[tuple[str, int | None, str]]
) -> int:
    """The entries of a warm timeline as the store itself reads them (whatever its layout), or,
    for a store without that method, by the type of its keys."""
    read_all = getattr(store, "entries", None)
    if callable(read_all):
        return len(await read_all(reader))
    return await _entries(client, rows)


async def _entries(client: redis.asyncio.Redis, rows: list[tuple[str, int | None, str]]) -> int:
    """Members of collection keys by their type (a follow set's markers included)."""
    total = 0
    for key, used, kind in rows:
        command = _ENTRY_COUNTS.get(kind)
        if used and command:
            total += int(await client.execute_command(command, key))  # type: ignore[no-untyped-call]
    return total
