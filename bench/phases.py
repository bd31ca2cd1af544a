"""The phases of one stack's measurement: log in, first (cold) reads, statements per read, the
mixed workload through the gateway (with the fan-out lag probes and the queue depth sampled
alongside), the same straight to the services, a tweets-only burst, the ceiling and the
processes speed-up."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.config import BenchConfig, Mix
from bench.cpu import CpuMeter, PidSource
from bench.driver import LoadSpec, Targets, run_load
from bench.loader import BENCH_PASSWORD
from bench.plan import Plan
from bench.probes import (
    StatementCounter,
    fanout_depth,
    fanout_lag,
    first_reads,
    key_families,
    login,
    redis_memory,
    statement_delta,
    warm_timeline_bytes,
)
from bench.progress import Progress
from bench.stats import summarize

READS_ONLY = Mix(1.0, 0.0, 0.0)
TWEETS_ONLY = Mix(0.0, 1.0, 0.0)
TWEET_CACHE_FAMILY = "tw"
FIRST_READ_CONCURRENCY = 4
# After a tweets-only burst, the fan-out workers' remaining work counts too: CPU and the timelines
# written are measured this much longer.
WRITE_TAIL_SECONDS = 3.0


@dataclass
class StackUnderTest:
    """What the phases need to reach and watch one running stack."""

    label: str
    targets: Targets
    database_url: str
    redis_url: str | None
    events_stream: str
    metrics_urls: list[str]
    pids: dict[str, PidSource]
    processes: int
    # The timeline service's Redis key namespace (settings.timeline_namespace).
    timeline_namespace: str = "chirp"


async def run_phase(
    config: BenchConfig,
    stack: StackUnderTest,
    accounts: list[tuple[int, str]],
    plan: Plan,
    *,
    label: str,
    path: str,
    mix: Mix,
    seconds: float,
    ceiling: bool = False,
    alongside: Callable[[], Coroutine[Any, Any, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """One closed-loop load phase; CPU of the stack's processes is measured over its window."""
    specs = [
        LoadSpec(
            path=path,
            targets=stack.targets,
            accounts=tuple(accounts),
            population=plan.population,
            mix=mix,
            concurrency=config.concurrency,
            seconds=seconds,
            warmup=config.warmup_seconds,
            limit=config.timeline_limit,
            seed=config.seed * 100 + index,
            ceiling=ceiling,
        )
        for index in range(config.load_processes)
    ]
    loop = asyncio.get_running_loop()
    started: asyncio.Future[float] = loop.create_future()

    def on_start(start_at: float) -> None:
        loop.call_soon_threadsafe(started.set_result, start_at)

    load = asyncio.ensure_future(asyncio.to_thread(run_load, specs, on_start=on_start))
    start_at = await asyncio.wait_for(started, 60)
    await asyncio.sleep(max(0.0, start_at + config.warmup_seconds - time.time()))
    meter = CpuMeter(stack.pids)
    before = meter.snapshot()
    extra = asyncio.ensure_future(alongside()) if alongside is not None else None
    await Progress(label, seconds, unit="s").follow_clock(seconds)
    cpu = CpuMeter.delta(before, meter.snapshot())
    outcome = await load
    result = outcome.as_dict()
    result["cpu_seconds"] = {**cpu, "load": outcome.load_cpu_seconds}
    result["path"], result["mix"] = path, {"read": mix.read, "tweet": mix.tweet, "follow": mix.follow}
    if extra is not None:
        result.update(await extra)
    return result


async def measure_mode(config: BenchConfig, stack: StackUnderTest, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"processes": stack.processes}
    accounts = await login(stack.targets.url, plan.accounts, BENCH_PASSWORD)
    readers = [user_id for user_id, _ in accounts]
    memory: dict[str, Any] = {}
    if stack.redis_url:
        memory["before_first_reads"] = await redis_memory(stack.redis_url)
    latencies, errors = await first_reads(
        stack.targets.timeline,
        readers,
        limit=config.timeline_limit,
        concurrency=FIRST_READ_CONCURRENCY,
        label=f"{stack.label}: first reads (cold)",
    )
    out["cold_rebuild"] = summarize(latencies, errors=errors).as_dict()
    if stack.redis_url:
        await asyncio.sleep(1.0)  # let follow-up writes of the rebuilds land
        memory["after_first_reads"] = await redis_memory(stack.redis_url)
        memory["families"] = await key_families(stack.redis_url)
        memory["warm_timeline"] = await warm_timeline_bytes(
            stack.redis_url, stack.timeline_namespace, readers
        )
        memory.update(_per_reader(memory, len(readers)))
    out["postgres"] = await _statements(config, stack, readers)
    out["rest"] = await run_phase(
        config,
        stack,
        accounts,
        plan,
        label=f"{stack.label}: mixed load via REST",
        path="rest",
        mix=config.mix,
        seconds=config.rest_seconds,
        alongside=lambda: _lag_and_depth(config, stack, plan),
    )
    out["fanout_lag"] = out["rest"].pop("fanout_lag")
    out["grpc"] = await run_phase(
        config,
        stack,
        accounts,
        plan,
        label=f"{stack.label}: mixed load via gRPC",
        path="grpc",
        mix=config.mix,
        seconds=config.grpc_seconds,
    )
    out["writes"] = await _writes(config, stack, accounts, plan)
    if stack.redis_url:
        memory["after_load"] = await redis_memory(stack.redis_url)
    out["redis"] = memory
    return out


async def measure_ceiling(config: BenchConfig, stack: StackUnderTest, plan: Plan) -> dict[str, Any]:
    common: dict[str, Any] = {"mix": READS_ONLY, "seconds": config.ceiling_seconds, "ceiling": True}
    return {
        "processes": stack.processes,
        "rest": await run_phase(
            config, stack, [], plan, label="ceiling: GET /ping (Envoy alone)", path="rest", **common
        ),
        "grpc": await run_phase(
            config, stack, [], plan, label="ceiling: gRPC Health.Check", path="grpc", **common
        ),
    }


async def measure_reads(
    config: BenchConfig, stack: StackUnderTest, accounts: list[tuple[int, str]], plan: Plan
) -> dict[str, Any]:
    """Timeline reads only, through the gateway: the processes speed-up run."""
    return await run_phase(
        config,
        stack,
        accounts,
        plan,
        label=f"reads via REST, {stack.processes} process(es)",
        path="rest",
        mix=READS_ONLY,
        seconds=config.speedup_seconds,
    )


async def _statements(config: BenchConfig, stack: StackUnderTest, readers: list[int]) -> dict[str, Any]:
    """PostgreSQL statements per warm timeline read: the statements counted while reading, less
    the background rate (outbox relays, janitors) counted over an idle window just before."""
    counter = StatementCounter(stack.database_url)
    reads = [readers[i % len(readers)] for i in range(config.statement_probe_reads)]
    idle_seconds = max(2.0, counter.settle)
    began, idle_before = counter.snapshot()
    await asyncio.sleep(idle_seconds)
    idle_end, idle_after = counter.snapshot()
    idle = statement_delta(idle_before, idle_after)
    idle_rate = sum(idle.values()) / (idle_end - began)
    start, before = counter.snapshot()
    latencies, errors = await first_reads(
        stack.targets.timeline,
        reads,
        limit=config.timeline_limit,
        concurrency=FIRST_READ_CONCURRENCY,
        label=f"{stack.label}: warm reads (statements)",
    )
    await asyncio.sleep(counter.settle)
    end, after = counter.snapshot()
    during = statement_delta(before, after)
    background = idle_rate * (end - start)
    per_read = max(0.0, sum(during.values()) - background) / len(reads)
    top = sorted(during.items(), key=lambda item: -item[1])[:8]
    return {
        "method": counter.method,
        "reads": len(reads),
        "statements_per_read": per_read,
        "background_per_second": idle_rate,
        "warm_read": summarize(latencies, errors=errors).as_dict(),
        "top_statements": [
            {"calls_per_read": calls / len(reads), "query": query[:200]} for query, calls in top
        ],
    }


async def _lag_and_depth(config: BenchConfig, stack: StackUnderTest, plan: Plan) -> dict[str, Any]:
    depths: list[int] = []

    async def sample_depth() -> None:
        while stack.redis_url:
            depth = await fanout_depth(stack.redis_url, stack.events_stream)
            if depth is not None:
                depths.append(depth)
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample_depth())
    gap = max(0.05, config.rest_seconds * 0.8 / max(1, len(plan.probes)))
    try:
        samples = await fanout_lag(
            stack.targets.tweets,
            stack.targets.timeline,
            plan.probes,
            limit=config.timeline_limit,
            poll=config.lag_poll_seconds,
            give_up=config.lag_timeout_seconds,
            gap=gap,
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    lag: dict[str, Any] = {}
    for kind, celebrity in (("ordinary", False), ("celebrity", True)):
        values = [value for sample in samples if sample.celebrity == celebrity for value in sample.lags]
        seen = [value for value in values if value is not None]
        lag[kind] = {
            **summarize(seen, errors=len(values) - len(seen)).as_dict(),
            "probes": sum(1 for sample in samples if sample.celebrity == celebrity),
            "samples_ms": [round(value * 1000, 2) for value in seen],
        }
    return {
        "fanout_lag": lag,
        "fanout_queue": {
            "samples": len(depths),
            "max": max(depths) if depths else None,
            "mean": statistics.fmean(depths) if depths else None,
        },
    }


async def _writes(
    config: BenchConfig, stack: StackUnderTest, accounts: list[tuple[int, str]], plan: Plan
) -> dict[str, Any]:
    """Tweets only, straight to the tweets service: CPU per tweet including the fan-out it causes
    (measured WRITE_TAIL_SECONDS past the burst) and, from the workers' metrics, timelines written."""
    written_before = await _scrape(stack.metrics_urls, "chirp_fanout_timelines_written_total")
    meter = CpuMeter(stack.pids)
    result = await run_phase(
        config,
        stack,
        accounts,
        plan,
        label=f"{stack.label}: tweets only via gRPC",
        path="grpc",
        mix=TWEETS_ONLY,
        seconds=config.write_seconds,
    )
    # The burst's own window is in result["cpu_seconds"]; add the tail, when the workers finish.
    tail_before = meter.snapshot()
    await asyncio.sleep(WRITE_TAIL_SECONDS)
    tail = CpuMeter.delta(tail_before, meter.snapshot())
    result["tail_cpu_seconds"] = tail
    written_after = await _scrape(stack.metrics_urls, "chirp_fanout_timelines_written_total")
    result["timelines_written"] = (
        written_after - written_before if written_before is not None and written_after is not None else None
    )
    return result


async def _scrape(urls: list[str], name: str) -> float | None:
    """The sum of counter `name` over the workers' /metrics; None when none answers."""
    total: float | None = None
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for url in urls:
            try:
                async with http.get(url) as response:
                    text = await response.text() if response.status == 200 else ""
                families = list(text_string_to_metric_families(text))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            for family in families:
                for sample in family.samples:
                    if sample.name == name:
                        total = (total or 0.0) + sample.value
    return total


def _per_reader(memory: dict[str, Any], readers: int) -> dict[str, Any]:
    """Bytes per warm reader: the reader's own keys (timeline, followees, follow versions, as the
    timeline service's TimelineStore names them), and the whole growth of used_memory over the
    first reads (tweet cache included) per reader."""
    families = memory.get("families", [])
    warm = memory.get("warm_timeline") or {}
    cache = next((f for f in families if f["family"].endswith(f":{TWEET_CACHE_FAMILY}:{{id}}")), None)
    growth = memory["after_first_reads"]["used_memory"] - memory["before_first_reads"]["used_memory"]
    return {
        "warm_reader_bytes": warm.get("reader_bytes"),
        "timeline_bytes": warm.get("timeline_bytes"),
        "timeline_entries": warm.get("timeline_entries"),
        "tweet_cache_entry_bytes": cache["mean_bytes"] if cache else None,
        "growth_per_reader_bytes": growth / readers if readers else None,
    }
