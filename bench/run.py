"""The whole benchmark: generate and load the dataset once, then per timeline mode a fresh copy
of it, an emptied Redis and a restarted stack; the ceiling on the first stack and the 1-vs-N
processes speed-up on the last one."""

from __future__ import annotations

import asyncio
import functools
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import microblog
from bench.config import BenchConfig, config_dict
from bench.cpu import machine
from bench.driver import Targets
from bench.graphgen import Dataset, generate
from bench.loader import BENCH_PASSWORD, load, migrate_all, password_hash
from bench.phases import StackUnderTest, measure_ceiling, measure_mode, measure_reads
from bench.plan import Plan, make_plan
from bench.probes import login
from bench.progress import Progress
from bench.stackctl import BASE_DATABASE, Infrastructure, RunningStack, stack_settings, start_on_free_ports
from chirp_core.settings import Settings


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build_dataset(config: BenchConfig, handle_prefix: str = "bench_") -> tuple[Dataset, float]:
    began = time.perf_counter()
    dataset = generate(
        users=config.users,
        median_followees=config.median_followees,
        followee_sigma=config.followee_sigma,
        celebrities=config.celebrities,
        threshold=config.celebrity_threshold,
        tweets_per_user=config.tweets_per_user,
        celebrity_tweets=config.celebrity_tweets,
        history_days=config.history_days,
        seed=config.seed,
        now_ms=int(time.time() * 1000),
        handle_prefix=handle_prefix,
    )
    return dataset, time.perf_counter() - began


def load_dataset(database_url: str, dataset: Dataset) -> dict[str, Any]:
    rows = dataset.users + len(dataset.follower_idx) + 2 * len(dataset.tweet_ids)
    bar = Progress("loading with COPY", rows, unit="rows")
    loaded = load(database_url, dataset, password_hash(), progress=bar.advance)
    bar.close()
    return {
        "rows": loaded.rows,
        "load_seconds": loaded.seconds,
        "vacuum_seconds": loaded.vacuum_seconds,
        "rows_per_second": loaded.rows_per_second,
    }


def _started(results: dict[str, Any], config: BenchConfig) -> None:
    results.update(
        {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine(), "python": platform.python_version(), "platform": platform.platform()},
            "config": config_dict(config),
            "modes": {},
        }
    )
    cores = results["machine"]["cpu_count"]
    _say(f"chirp bench: {cores} cores, load average {results['machine']['load_average']}")


def _finished(results: dict[str, Any], began: float) -> None:
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["duration_seconds"] = round(time.monotonic() - began, 1)
    results["machine"]["load_average_end"] = machine()["load_average"]


async def run_own_stack(config: BenchConfig) -> dict[str, Any]:
    """Everything on a PostgreSQL, Redis and stack of the benchmark's own, in a temporary folder."""
    began = time.monotonic()
    results: dict[str, Any] = {}
    _started(results, config)
    root = Path(tempfile.mkdtemp(prefix="chirp-bench-"))
    infra = Infrastructure(root)
    try:
        await asyncio.to_thread(infra.start)
        if not config.microblog_only:
            await _modes(config, infra, root, results)
        if config.microblog or config.microblog_only:
            results["microblog"] = await _microblog(config, infra, root)
    finally:
        await asyncio.to_thread(infra.stop)
        shutil.rmtree(root, ignore_errors=True)
    _finished(results, began)
    return results


async def _modes(config: BenchConfig, infra: Infrastructure, root: Path, results: dict[str, Any]) -> None:
    dataset, generate_seconds = await asyncio.to_thread(build_dataset, config)
    base_url = await asyncio.to_thread(infra.create_database, BASE_DATABASE)
    await migrate_all(base_url)
    results["dataset"] = {
        **dataset.shape(),
        "generate_seconds": generate_seconds,
        **await asyncio.to_thread(load_dataset, base_url, dataset),
    }
    await asyncio.to_thread(infra.enable_statement_counts, BASE_DATABASE)
    plan = await asyncio.to_thread(make_plan, dataset, config)
    for number, mode in enumerate(config.modes):
        last = number == len(config.modes) - 1
        await _one_mode(config, infra, root, plan, mode, results, ceiling=number == 0, speedup=last)


async def _microblog(config: BenchConfig, infra: Infrastructure, root: Path) -> dict[str, Any]:
    """The microblog phase on a database and an emptied Redis of its own, with the last timeline
    mode; nobody has enough followers to be a celebrity."""
    mode = config.modes[-1]
    seed_plan = await asyncio.to_thread(microblog.make_seed_plan, config, int(time.time() * 1000))
    url = await asyncio.to_thread(infra.create_database, microblog.DATABASE)
    await migrate_all(url)
    await asyncio.to_thread(load, url, seed_plan.copied, password_hash())
    await asyncio.to_thread(infra.flush_redis)

    def make_settings() -> Settings:
        return stack_settings(
            root,
            url,
            infra.redis_url,
            mode=mode,
            threshold=config.microblog_users,
            overrides={"fanout_workers": config.fanout_workers, "timeline_size": config.timeline_size},
            processes=config.processes,
        )

    _say(f"-- microblog ({mode}): starting {config.processes} worker process(es) and Envoy")
    settings, running = await start_on_free_ports(make_settings, config.processes)
    try:
        stack = _under_test(f"microblog {mode}", settings, running, infra)
        found = await microblog.measure(config, stack, seed_plan, root / "wrk")
    finally:
        await running.stop()
    await asyncio.to_thread(infra.drop_database, microblog.DATABASE)
    return {"mode": mode, **found}


async def _one_mode(
    config: BenchConfig,
    infra: Infrastructure,
    root: Path,
    plan: Plan,
    mode: str,
    results: dict[str, Any],
    *,
    ceiling: bool,
    speedup: bool,
) -> None:
    database = f"bench_{mode}"
    database_url = await asyncio.to_thread(infra.create_database, database, BASE_DATABASE)
    await asyncio.to_thread(infra.flush_redis)

    def settings_for(processes: int) -> Settings:
        return stack_settings(
            root,
            database_url,
            infra.redis_url,
            mode=mode,
            threshold=config.celebrity_threshold,
            overrides={"fanout_workers": config.fanout_workers, "timeline_size": config.timeline_size},
            processes=processes,
        )

    _say(f"-- mode {mode}: starting {config.processes} worker process(es) and Envoy")
    settings, running = await start_on_free_ports(lambda: settings_for(config.processes), config.processes)
    try:
        stack = _under_test(mode, settings, running, infra)
        results["modes"][mode] = await measure_mode(config, stack, plan)
        if ceiling:
            results["ceiling"] = await measure_ceiling(config, stack, plan)
        if speedup:
            accounts = await login(stack.targets.url, plan.accounts, BENCH_PASSWORD)
    finally:
        await running.stop()
    if speedup:
        results["speedup"] = await _speedup(config, infra, plan, mode, settings_for, accounts)
    await asyncio.to_thread(infra.drop_database, database)


async def _speedup(
    config: BenchConfig,
    infra: Infrastructure,
    plan: Plan,
    mode: str,
    settings_for: Callable[[int], Settings],
    accounts: list[tuple[int, str]],
) -> dict[str, Any]:
    """The same reads on a freshly started stack of 1 and of N processes (same database, same warm
    Redis, same tokens), in the order 1, N, N, 1 so that a drift of the machine's load weighs on
    both alike; each count keeps its better run."""
    counts = sorted({1, max(2, config.processes)})
    reads: dict[str, Any] = {}
    for count in [*counts, *reversed(counts)]:
        _say(f"-- speed-up: {count} worker process(es)")
        settings, running = await start_on_free_ports(functools.partial(settings_for, count), count)
        try:
            run = await measure_reads(config, _under_test(mode, settings, running, infra), accounts, plan)
        finally:
            await running.stop()
        best = reads.get(str(count))
        if best is None or _reads_per_second(run) > _reads_per_second(best):
            reads[str(count)] = run
    return speedup_figures(mode, reads)


def _reads_per_second(run: dict[str, Any]) -> float:
    return float(run["ops"]["timeline_read"]["throughput"] or 0.0)


def speedup_figures(mode: str, reads: dict[str, Any]) -> dict[str, Any]:
    """Timeline reads/s through the gateway with 1 process and with the larger count."""
    counts = sorted(reads, key=int)
    one, many = reads[counts[0]], reads[counts[-1]]
    base = one["ops"]["timeline_read"]["throughput"]
    scaled = many["ops"]["timeline_read"]["throughput"]
    return {
        "mode": mode,
        "processes": [int(count) for count in counts],
        "runs": reads,
        "speedup": scaled / base if base else None,
    }


def _one_worker(running: RunningStack, index: int) -> Callable[[], list[int]]:
    """The pid of worker `index` (the one running now, should it have been restarted)."""
    return lambda: running.worker_pids()[index : index + 1]


def _under_test(
    label: str, settings: Settings, running: RunningStack, infra: Infrastructure | None
) -> StackUnderTest:
    """REST through Envoy, gRPC straight to the workers; CPU of the Python worker processes
    ("stack"), of Envoy, and of PostgreSQL and Redis."""
    where = running.supervisor.addresses
    metrics = []
    if settings.metrics_port:
        metrics = [
            f"http://{settings.host}:{settings.metrics_port + i}/metrics" for i in range(running.processes)
        ]
    pids: dict[str, Callable[[], list[int]]] = {"stack": running.worker_pids, "envoy": running.envoy_pids}
    for index in range(running.processes):
        pids[f"worker{index}"] = _one_worker(running, index)
    if infra is not None:
        pids.update({"postgres": infra.postgres_pids, "redis": infra.redis_pids})
    return StackUnderTest(
        label=label,
        targets=Targets(running.url, where["graph"], where["tweets"], where["timeline"]),
        database_url=str(settings.database_url),
        redis_url=settings.redis_url,
        events_stream=settings.events_stream,
        metrics_urls=metrics,
        pids=pids,
        processes=running.processes,
        timeline_namespace=settings.timeline_namespace,
    )


async def run_external(
    config: BenchConfig,
    *,
    url: str,
    targets: dict[str, str],
    database_url: str,
    redis_url: str | None,
    label: str,
) -> dict[str, Any]:
    """One mode against a stack running elsewhere: the dataset is loaded next to its data (new
    handles), nothing is restarted or flushed, CPU is not measured."""
    began = time.monotonic()
    results: dict[str, Any] = {}
    _started(results, config)
    prefix = f"b{int(time.time()) % 1_000_000}_"
    dataset, generate_seconds = await asyncio.to_thread(build_dataset, config, prefix)
    results["dataset"] = {
        **dataset.shape(),
        "generate_seconds": generate_seconds,
        **await asyncio.to_thread(load_dataset, database_url, dataset),
    }
    plan = await asyncio.to_thread(make_plan, dataset, config)
    stack = StackUnderTest(
        label=label,
        targets=Targets(url, targets["graph"], targets["tweets"], targets["timeline"]),
        database_url=database_url,
        redis_url=redis_url,
        events_stream=Settings().events_stream,
        metrics_urls=[],
        pids={},
        processes=0,
    )
    results["modes"][label] = await measure_mode(config, stack, plan)
    results["ceiling"] = await measure_ceiling(config, stack, plan)
    _finished(results, began)
    return results
