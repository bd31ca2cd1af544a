"""`chirp bench --soak MINUTES`: does the stack hold steady under hours of ordinary load?

On a stack of its own (as `chirp bench` starts it) with a modest seeded graph, a short closed loop
of the bench's mix through Envoy measures the capacity; then an open loop (Poisson arrivals at a
fixed rate, LOAD_SHARE of that capacity) runs for MINUTES. Each row (a minute) gives the requests
scheduled in it, their errors, the rate achieved, p50 and p99, and the resident memory (VmRSS) of
every process of the stack: PostgreSQL (the postmaster and its backends, summed), Redis, Envoy and
each Python worker, with Redis's used_memory beside them. The verdict compares the last row with
the second (the first holds the start: connections opening, caches filling) and fails when a
process grew by more than RSS_GROWTH_SHARE plus RSS_GROWTH_MIB, or more than MAX_ERROR_SHARE of the
requests failed. PSS is measured beside RSS: summed over PostgreSQL's backends, RSS counts the
shared buffers once per backend that touched them, so a growth counts only when PSS shows it too.

Open-loop latency runs from the moment a request was due, not from when it was sent, so a stack
that falls behind shows it in p99 instead of slowing the load down. Within the mix, a follow
alternates with unfollowing the oldest edge the client made, and tweets rotate through posting,
editing one of the client's tweets and deleting its oldest, so the graph stays the same size and
the tweets grow slowly, as on a live service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from bench.config import QUICK, BenchConfig, config_dict
from bench.cpu import machine, with_children
from bench.driver import (
    FOLLOW,
    READ,
    TWEET,
    LoadSpec,
    OpResult,
    Targets,
    _next,
    _other,
    _RestClient,
    _wait_for_go,
)
from bench.loader import BENCH_PASSWORD, migrate_all
from bench.plan import make_plan
from bench.probes import login, redis_memory
from bench.run import build_dataset, load_dataset
from bench.stackctl import BASE_DATABASE, Infrastructure, RunningStack, stack_settings, start_stack
from bench.stats import summarize

MIB = 2**20
LOAD_SHARE = 0.8
RSS_GROWTH_SHARE = 0.2
RSS_GROWTH_MIB = 20.0
MAX_ERROR_SHARE = 0.01
# A request not answered in this long is an error; it also bounds how late a row is printed.
REQUEST_TIMEOUT_SECONDS = 10.0
# Arrivals past this many unanswered requests in one load process are shed (counted as errors)
# rather than queued without bound in the load generator.
MAX_IN_FLIGHT = 512
OPEN_LOOP_CONNECTIONS = 64
READY_SECONDS = 60.0
START_DELAY_SECONDS = 0.2
# The tweets a client remembers to edit and delete.
KEPT_TWEETS = 50
OPERATIONS = (READ, TWEET, FOLLOW)

# A modest graph (a few hundred users, two celebrities) that loads in seconds, in hybrid mode.
SOAK_PRESET = replace(
    QUICK,
    users=400,
    median_followees=20.0,
    celebrities=2,
    celebrity_threshold=150,
    tweets_per_user=5.0,
    celebrity_tweets=20,
    active_users=200,
    modes=("hybrid",),
    out=Path("bench-results"),
)


@dataclass(frozen=True)
class SoakConfig:
    bench: BenchConfig
    minutes: float
    row_seconds: float = 60.0
    calibration_seconds: float = 25.0

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.minutes * 60 / self.row_seconds - 1e-9))

    def validate(self) -> None:
        self.bench.validate()
        if not self.minutes > 0:
            raise ValueError("--soak MINUTES must be above 0")
        if not self.row_seconds > 0 or not self.calibration_seconds > 0:
            raise ValueError("--soak-row-seconds and --soak-calibration-seconds must be above 0")
        if len(self.bench.modes) != 1:
            raise ValueError("--soak runs one timeline mode: give --modes one of pull, push, hybrid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help=f"a soak run instead: the mixed load at {LOAD_SHARE * 100:.0f}%% of the measured capacity for "
        "MINUTES, a row a minute (p99, RSS of every process), then a verdict on their growth; exits "
        "1 when memory grows or errors pass 1%%",
    )
    # For tests: shorter rows and calibration than a real soak wants.
    parser.add_argument("--soak-row-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--soak-calibration-seconds", type=float, default=25.0, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> SoakConfig:
    """SOAK_PRESET with whatever bench flags the command line gave (--users, --mix, --out, ...)."""
    given = {
        f.name: getattr(args, f.name)
        for f in fields(BenchConfig)
        if getattr(args, f.name, None) not in (None, False)
    }
    if "modes" in given:
        given["modes"] = tuple(mode.strip() for mode in given["modes"].split(",") if mode.strip())
    config = SoakConfig(
        bench=replace(SOAK_PRESET, **given),
        minutes=args.soak,
        row_seconds=args.soak_row_seconds,
        calibration_seconds=args.soak_calibration_seconds,
    )
    config.validate()
    return config


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the load processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSpec:
    """One load process: `load` says whom it acts as and what mix it sends; with `rate` (arrivals
    per second) it runs an open loop of `rows` rows of `row_seconds`, without it a closed loop of
    load.concurrency clients over load.seconds after load.warmup, reported as one row."""

    load: LoadSpec
    rate: float | None
    rows: int = 1
    row_seconds: float = 60.0


class SoakClient(_RestClient):
    """The bench's REST operations; a follow alternates with unfollowing this client's oldest
    follow, a tweet rotates through posting, editing one of its tweets and deleting its oldest."""

    def __init__(self, spec: LoadSpec) -> None:
        super().__init__(spec)
        self.follows: deque[tuple[int, str, int]] = deque()
        self.tweets: deque[tuple[str, str]] = deque(maxlen=KEPT_TWEETS)
        self.tweet_turns = 0
        self.follow_turns = 0

    async def tweet(self, rng: random.Random) -> str | None:
        self.tweet_turns += 1
        turn = self.tweet_turns % 4
        if turn == 2 and self.tweets:
            tweet_id, token = rng.choice(self.tweets)
            body = {"content": f"edited at {time.time():.3f}: the lazy dog jumps over the quick fox"}
            return await self._call("PATCH", f"/tweets/{tweet_id}", token, json=body)
        if turn == 3 and self.tweets:
            tweet_id, token = self.tweets.popleft()
            return await self._call("DELETE", f"/tweets/{tweet_id}", token)
        user_id, token = rng.choice(self.spec.accounts)
        self.counter += 1
        body = {"user_id": str(user_id), "content": f"soak tweet {self.spec.seed}-{self.counter}"}
        async with self.http.post("/tweets", json=body, headers={"Authorization": f"Bearer {token}"}) as r:
            answer = await r.read()
            if r.status >= 300:
                return f"POST /tweets: {r.status} {answer[:200]!r}"
            self.tweets.append((str(json.loads(answer)["tweet_id"]), token))
        return None

    async def follow(self, rng: random.Random) -> str | None:
        self.follow_turns += 1
        if self.follow_turns % 2 == 0 and self.follows:
            follower, token, followee = self.follows.popleft()
            body = {"follower_id": str(follower), "followee_id": str(followee)}
            return await self._call("DELETE", "/follow", token, json=body)
        user_id, token = rng.choice(self.spec.accounts)
        followee = _other(rng, self.spec.population, user_id)
        self.follows.append((user_id, token, followee))
        body = {"follower_id": str(user_id), "followee_id": str(followee)}
        return await self._call("POST", "/follow", token, json=body)


Row = dict[str, OpResult]
# ("ready", None), ("row", (index, Row)), ("done", None) or ("error", text), from each process.
Results: TypeAlias = "multiprocessing.Queue[tuple[str, Any]]"


def _process_main(spec: SoakSpec, results: Results, go: Any) -> None:
    try:
        asyncio.run(_drive(spec, results, go))
        results.put(("done", None))
    except BaseException as exc:  # reported to the parent, which stops the run
        results.put(("error", f"{type(exc).__name__}: {exc}"))


async def _drive(spec: SoakSpec, results: Results, go: Any) -> None:
    client = SoakClient(spec.load)
    await client.open()
    results.put(("ready", None))
    start_at = await asyncio.to_thread(_wait_for_go, go)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        if spec.rate is None:
            results.put(("row", (0, await _closed_loop(spec.load, client, start_at))))
        else:
            await _open_loop(spec, spec.rate, client, start_at, results)
    finally:
        await client.close()


async def _call(client: SoakClient, name: str, rng: random.Random) -> str | None:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            return await client.operations()[name](rng)
    except TimeoutError:
        return f"{name}: no answer in {REQUEST_TIMEOUT_SECONDS:.0f} s"
    except Exception as exc:
        return f"{name}: {type(exc).__name__}: {exc}"


async def _closed_loop(load: LoadSpec, client: SoakClient, start_at: float) -> Row:
    weights = [load.mix.read, load.mix.tweet, load.mix.follow]
    row: Row = {name: OpResult() for name in OPERATIONS}
    window_start = start_at + load.warmup
    end = window_start + load.seconds

    async def client_loop(index: int) -> None:
        rng = random.Random(load.seed * 1_000 + index)
        while (began := time.time()) < end:
            name = rng.choices(OPERATIONS, weights)[0]
            error = await _call(client, name, rng)
            if began < window_start or time.time() > end:
                continue
            if error is None:
                row[name].latencies.append(time.time() - began)
            else:
                row[name].fail(error)

    await asyncio.gather(*(client_loop(index) for index in range(load.concurrency)))
    return row


async def _open_loop(
    spec: SoakSpec,
    rate: float,
    client: SoakClient,
    start_at: float,
    results: Results,
) -> None:
    """Poisson arrivals from start_at; each row is reported once its arrivals have all answered."""
    weights = [spec.load.mix.read, spec.load.mix.tweet, spec.load.mix.follow]
    rows: list[Row] = [{name: OpResult() for name in OPERATIONS} for _ in range(spec.rows)]
    # A row's requests, and whether every arrival of the row has been sent (or shed).
    sent: list[set[asyncio.Task[None]]] = [set() for _ in range(spec.rows)]
    all_sent = [asyncio.Event() for _ in range(spec.rows)]
    in_flight: set[asyncio.Task[None]] = set()
    arrivals = random.Random(spec.load.seed)
    picks = random.Random(spec.load.seed + 1)

    def row_end(index: int) -> float:
        return start_at + (index + 1) * spec.row_seconds

    async def one(index: int, name: str, due: float) -> None:
        error = await _call(client, name, picks)
        if error is None:
            rows[index][name].latencies.append(time.time() - due)
        else:
            rows[index][name].fail(error)

    async def report() -> None:
        for index in range(spec.rows):
            await all_sent[index].wait()
            await asyncio.gather(*sent[index])
            sent[index].clear()
            results.put(("row", (index, rows[index])))

    reporter = asyncio.ensure_future(report())
    due = start_at + arrivals.expovariate(rate)
    index = 0
    while index < spec.rows:
        if due >= row_end(index):
            all_sent[index].set()
            index += 1
            continue
        await asyncio.sleep(max(0.0, due - time.time()))
        name = picks.choices(OPERATIONS, weights)[0]
        if len(in_flight) >= MAX_IN_FLIGHT:
            rows[index][name].fail(f"shed: {MAX_IN_FLIGHT} requests already in flight")
        else:
            task = asyncio.ensure_future(one(index, name, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent[index].add(task)
        due += arrivals.expovariate(rate)
    await reporter


class LoadProcesses:
    """Spawned load processes, released at one moment, whose rows arrive on one queue."""

    def __init__(self, specs: list[SoakSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self.specs = specs
        self.results: Results = context.Queue()
        self.go = context.Value("d", 0.0)
        self.processes = [
            context.Process(target=_process_main, args=(spec, self.results, self.go), name=f"chirp-soak-{i}")
            for i, spec in enumerate(specs)
        ]

    async def start(self) -> float:
        """Start every process, wait until all have connected, release them; the start time."""
        for process in self.processes:
            process.start()
        for _ in self.processes:
            kind, item = await self._next(time.time() + READY_SECONDS)
            if kind != "ready":
                raise RuntimeError(f"a load process failed before starting: {item}")
        start_at = time.time() + START_DELAY_SECONDS
        self.go.value = start_at
        return start_at

    async def next_row(self, deadline: float) -> tuple[int, Row]:
        """The next row any process reports (a process says "done" after its last row)."""
        kind, item = await self._next(deadline)
        while kind == "done":
            kind, item = await self._next(deadline)
        if kind != "row":
            raise RuntimeError(f"a load process failed: {item}")
        index, row = item
        return int(index), row

    async def stop(self) -> None:
        for process in self.processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join)

    async def _next(self, deadline: float) -> tuple[str, Any]:
        return await asyncio.to_thread(_next, self.results, deadline)


def _specs(
    config: SoakConfig, targets: Targets, accounts: list[tuple[int, str]], population: tuple[int, ...]
) -> list[LoadSpec]:
    bench = config.bench
    return [
        LoadSpec(
            path="rest",
            targets=targets,
            accounts=tuple(accounts),
            population=population,
            mix=bench.mix,
            concurrency=bench.concurrency,
            seconds=config.calibration_seconds,
            warmup=bench.warmup_seconds,
            limit=bench.timeline_limit,
            seed=bench.seed * 100 + index,
        )
        for index in range(bench.load_processes)
    ]


def _merge(parts: list[Row]) -> Row:
    merged: Row = {}
    for part in parts:
        for name, result in part.items():
            into = merged.setdefault(name, OpResult())
            into.latencies.extend(result.latencies)
            into.errors += result.errors
            into.samples.extend(result.samples[: max(0, 3 - len(into.samples))])
    return merged


def _row_figures(row: Row, seconds: float) -> dict[str, Any]:
    everything = summarize(
        [value for result in row.values() for value in result.latencies],
        errors=sum(result.errors for result in row.values()),
        seconds=seconds,
    )
    requests = everything.count + everything.errors
    return {
        "requests": requests,
        "errors": everything.errors,
        "rate": requests / seconds,
        "p50_ms": everything.as_dict()["p50"],
        "p99_ms": everything.as_dict()["p99"],
        "ops": {
            name: summarize(result.latencies, errors=result.errors, seconds=seconds).as_dict()
            for name, result in sorted(row.items())
        },
        "error_samples": [text for result in row.values() for text in result.samples][:3],
    }


# --- memory -----------------------------------------------------------------------------------


def _proc_bytes(pid: int, file: str, name: str) -> int:
    """The `name:  N kB` line of /proc/PID/<file>; 0 for a process gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    """VmRSS: resident memory, pages shared with other processes included."""
    return _proc_bytes(pid, "status", "VmRSS")


def pss_bytes(pid: int) -> int:
    """Pss: resident memory with each shared page divided among the processes sharing it, so
    PostgreSQL's shared buffers count once over its backends instead of once per backend."""
    return _proc_bytes(pid, "smaps_rollup", "Pss")


PidGroups = Callable[[], dict[str, list[int]]]


def stack_processes(running: RunningStack, infra: Infrastructure) -> PidGroups:
    """The stack's processes by name, each with its children: PostgreSQL (the postmaster and its
    backends), Redis, Envoy, and each worker ("worker 1", ...; a restarted worker keeps its name)."""

    def groups() -> dict[str, list[int]]:
        found = {
            "postgres": infra.postgres_pids(),
            "redis": [pid for pid in infra.redis_pids() for pid in with_children(pid)],
            "envoy": [pid for pid in running.envoy_pids() for pid in with_children(pid)],
        }
        for number, pid in enumerate(running.worker_pids(), 1):
            found[f"worker {number}"] = with_children(pid)
        return found

    return groups


async def memory_sample(processes: PidGroups, redis_url: str | None) -> dict[str, Any]:
    groups = processes()
    sample: dict[str, Any] = {
        "rss_mib": {name: sum(rss_bytes(pid) for pid in pids) / MIB for name, pids in groups.items()},
        "pss_mib": {name: sum(pss_bytes(pid) for pid in pids) / MIB for name, pids in groups.items()},
        "pids": groups,
        "redis_used_memory_mib": None,
    }
    if redis_url:
        sample["redis_used_memory_mib"] = (await redis_memory(redis_url))["used_memory"] / MIB
    return sample


# --- the run ----------------------------------------------------------------------------------


async def calibrate(config: SoakConfig, loads: list[LoadSpec]) -> dict[str, Any]:
    """The closed loop's successful requests per second: the capacity the soak takes a share of."""
    processes = LoadProcesses([SoakSpec(load, rate=None) for load in loads])
    _say(
        f"chirp bench --soak: measuring capacity, {len(loads)} x {config.bench.concurrency} clients "
        f"in a closed loop for {config.calibration_seconds:g} s"
    )
    try:
        start_at = await processes.start()
        deadline = start_at + config.bench.warmup_seconds + config.calibration_seconds + READY_SECONDS
        parts = [(await processes.next_row(deadline))[1] for _ in loads]
    finally:
        await processes.stop()
    figures = _row_figures(_merge(parts), config.calibration_seconds)
    figures["capacity"] = (figures["requests"] - figures["errors"]) / config.calibration_seconds
    return figures


async def soak(
    config: SoakConfig,
    loads: list[LoadSpec],
    rate: float,
    processes: PidGroups,
    redis_url: str | None,
    print_line: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The open loop at `rate` (split evenly over the load processes); prints each row as it ends."""
    specs = [
        SoakSpec(
            replace(load, concurrency=OPEN_LOOP_CONNECTIONS, seconds=config.rows * config.row_seconds),
            rate=rate / len(loads),
            rows=config.rows,
            row_seconds=config.row_seconds,
        )
        for load in loads
    ]
    load_processes = LoadProcesses(specs)
    rows: list[dict[str, Any]] = []
    samples: list[asyncio.Future[dict[str, Any]]] = []
    sampler: asyncio.Future[None] | None = None
    try:
        start_at = await load_processes.start()
        samples = [asyncio.get_running_loop().create_future() for _ in range(config.rows)]

        async def sample_memory() -> None:
            for index, future in enumerate(samples):
                await asyncio.sleep(max(0.0, start_at + (index + 1) * config.row_seconds - time.time()))
                future.set_result(await memory_sample(processes, redis_url))

        sampler = asyncio.ensure_future(sample_memory())
        parts: dict[int, list[Row]] = {index: [] for index in range(config.rows)}
        while len(rows) < config.rows:
            index = len(rows)
            deadline = start_at + (index + 1) * config.row_seconds + REQUEST_TIMEOUT_SECONDS + READY_SECONDS
            while len(parts[index]) < len(specs):
                got, part = await load_processes.next_row(deadline)
                parts[got].append(part)
            row = {
                "index": index,
                "end_seconds": (index + 1) * config.row_seconds,
                **_row_figures(_merge(parts[index]), config.row_seconds),
                **await samples[index],
            }
            if index == 0:
                for line in table_head(row):
                    print_line(line)
            rows.append(row)
            print_line(table_line(row))
        await sampler
    finally:
        if sampler is not None:
            sampler.cancel()
        await load_processes.stop()
    return rows


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table_head(row: dict[str, Any]) -> list[str]:
    names = [f"{name} MiB" for name in row["rss_mib"]]
    head = ["time", "requests", "errors", "req/s", "p50 ms", "p99 ms", *names, "redis used MiB"]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def table_line(row: dict[str, Any]) -> str:
    used = row["redis_used_memory_mib"]
    cells = [
        _clock(row["end_seconds"]),
        f"{row['requests']:,}",
        f"{row['errors']:,}",
        f"{row['rate']:.1f}",
        _ms(row["p50_ms"]),
        _ms(row["p99_ms"]),
        *(f"{mib:.1f}" for mib in row["rss_mib"].values()),
        "-" if used is None else f"{used:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def verdict(
    rows: list[dict[str, Any]],
    *,
    growth_share: float = RSS_GROWTH_SHARE,
    growth_mib: float = RSS_GROWTH_MIB,
    max_error_share: float = MAX_ERROR_SHARE,
) -> dict[str, Any]:
    """Growth from the second row (the first when there are fewer than three) to the last: of each
    process's RSS (and PSS), of Redis's used_memory and of p99; `failures` names what is over its
    bound. A process fails when its RSS grew past the bound and, where PSS was measured, its PSS
    too: RSS alone also grows as more PostgreSQL backends touch the same shared buffers."""
    first, last = (rows[1] if len(rows) >= 3 else rows[0]), rows[-1]
    rss: dict[str, Any] = {}
    failures: list[str] = []

    def growth_of(before: float, after: float) -> dict[str, Any]:
        return {
            "from_mib": before,
            "to_mib": after,
            "growth_mib": after - before,
            "growth_share": (after - before) / before if before else None,
            "limit_mib": before * growth_share + growth_mib,
        }

    for name, before in first["rss_mib"].items():
        after = last["rss_mib"].get(name, 0.0)
        growth = after - before
        rss[name] = growth_of(before, after)
        over = growth > rss[name]["limit_mib"]
        if name in first.get("pss_mib", {}):
            pss = growth_of(first["pss_mib"][name], last["pss_mib"].get(name, 0.0))
            rss[name]["pss"] = pss
            over = over and pss["growth_mib"] > pss["limit_mib"]
        if over:
            pss_part = f", PSS {rss[name]['pss']['growth_mib']:+.1f} MiB" if "pss" in rss[name] else ""
            failures.append(
                f"{name} grew {growth:.1f} MiB ({before:.1f} -> {after:.1f}{pss_part}), over "
                f"{growth_share:.0%} + {growth_mib:g} MiB"
            )
    requests = sum(row["requests"] for row in rows)
    errors = sum(row["errors"] for row in rows)
    error_share = errors / requests if requests else 1.0
    if error_share > max_error_share:
        failures.append(
            f"{errors:,} of {requests:,} requests failed ({error_share:.2%}), over {max_error_share:.0%}"
        )
    p99_from, p99_to = first["p99_ms"], last["p99_ms"]
    used_from, used_to = first["redis_used_memory_mib"], last["redis_used_memory_mib"]
    return {
        "from": _clock(first["end_seconds"]),
        "to": _clock(last["end_seconds"]),
        "rss": rss,
        "p99_ms": {
            "from": p99_from,
            "to": p99_to,
            "growth_share": (p99_to - p99_from) / p99_from if p99_from and p99_to is not None else None,
        },
        "redis_used_memory_mib": {"from": used_from, "to": used_to},
        "requests": requests,
        "errors": errors,
        "error_share": error_share,
        "failures": failures,
        "ok": not failures,
    }


def verdict_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"From {result['from']} to {result['to']}:"]
    for name, growth in result["rss"].items():
        share = growth["growth_share"]
        line = (
            f"- {name}: {growth['from_mib']:.1f} -> {growth['to_mib']:.1f} MiB, "
            f"{growth['growth_mib']:+.1f} MiB ({'-' if share is None else f'{share:+.1%}'})"
        )
        if "pss" in growth:
            pss = growth["pss"]
            line += f"; PSS {pss['from_mib']:.1f} -> {pss['to_mib']:.1f} MiB ({pss['growth_mib']:+.1f} MiB)"
        lines.append(line)
    p99 = result["p99_ms"]
    change = "" if p99["growth_share"] is None else f" ({p99['growth_share']:+.1%})"
    lines.append(f"- p99: {_ms(p99['from'])} -> {_ms(p99['to'])} ms{change}")
    used = result["redis_used_memory_mib"]
    if used["from"] is not None:
        lines.append(f"- Redis used_memory: {used['from']:.1f} -> {used['to']:.1f} MiB")
    lines.append(f"- errors: {result['errors']:,} of {result['requests']:,} ({result['error_share']:.2%})")
    if result["ok"]:
        lines.append("Verdict: steady (no process grew past its bound, errors within bounds).")
    else:
        lines.extend(["Verdict: FAILED", *(f"- {failure}" for failure in result["failures"])])
    return lines


async def run_soak(config: SoakConfig, print_line: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole soak on a PostgreSQL, Redis and stack of its own, in a temporary folder."""
    bench = config.bench
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            **config_dict(bench),
            "minutes": config.minutes,
            "row_seconds": config.row_seconds,
            "calibration_seconds": config.calibration_seconds,
            "load_share": LOAD_SHARE,
        },
    }
    root = Path(tempfile.mkdtemp(prefix="chirp-soak-"))
    infra = Infrastructure(root)
    try:
        await asyncio.to_thread(infra.start)
        dataset, _ = await asyncio.to_thread(build_dataset, bench)
        database_url = await asyncio.to_thread(infra.create_database, BASE_DATABASE)
        await migrate_all(database_url)
        results["dataset"] = {
            **dataset.shape(),
            **await asyncio.to_thread(load_dataset, database_url, dataset),
        }
        plan = await asyncio.to_thread(make_plan, dataset, bench)
        settings = stack_settings(
            root,
            database_url,
            infra.redis_url,
            mode=bench.modes[0],
            threshold=bench.celebrity_threshold,
            overrides={"fanout_workers": bench.fanout_workers, "timeline_size": bench.timeline_size},
            processes=bench.processes,
        )
        _say(f"chirp bench --soak: starting {bench.processes} worker process(es) and Envoy")
        running = await start_stack(settings, bench.processes)
        try:
            accounts = await login(running.url, plan.accounts, BENCH_PASSWORD)
            where = running.supervisor.addresses
            targets = Targets(running.url, where["graph"], where["tweets"], where["timeline"])
            loads = _specs(config, targets, accounts, plan.population)
            results["calibration"] = await calibrate(config, loads)
            rate = results["calibration"]["capacity"] * LOAD_SHARE
            results["target_rate"] = rate
            print_line(
                f"chirp bench --soak: capacity {results['calibration']['capacity']:.1f} req/s "
                f"({bench.mix.label()}, through Envoy); driving {rate:.1f} req/s ({LOAD_SHARE:.0%}) "
                f"for {config.minutes:g} min, a row every {config.row_seconds:g} s"
            )
            results["rows"] = await soak(
                config, loads, rate, stack_processes(running, infra), infra.redis_url, print_line
            )
        finally:
            await running.stop()
    finally:
        await asyncio.to_thread(infra.stop)
        shutil.rmtree(root, ignore_errors=True)
    results["verdict"] = verdict(results["rows"])
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


def write(results: dict[str, Any], out: Path, lines: list[str]) -> Path:
    """soak.json (everything) and soak.md (what was printed) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    return out / "soak.json"


def main(config: SoakConfig, command: str) -> int:
    """Run, print rows as they come and the verdict; 1 when the verdict fails."""
    printed: list[str] = []

    def print_line(line: str) -> None:
        printed.append(line)
        print(line, flush=True)

    results = asyncio.run(run_soak(config, print_line))
    results["command"] = command
    print_line("")
    for line in verdict_lines(results["verdict"]):
        print_line(line)
    path = write(results, config.bench.out, [f"`{command}`", "", *printed])
    print(f"chirp bench: results in {path} and {path.with_suffix('.md')}")
    return 0 if results["verdict"]["ok"] else 1
