"""The load generator: a bounded closed loop (each client sends its next request when the last
one answered) in several processes, through the REST gateway or straight to the services over
gRPC. Loopback only: the targets are the stack's own addresses.

Every process sets itself up (imports, connections) and says so; then all start together; the
first `warmup` seconds are not counted, and a request counts when it started inside the window
and answered before its end. Each process reports its latencies, errors and CPU time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.config import Mix
from bench.stats import Summary, summarize

READ, TWEET, FOLLOW = "timeline_read", "tweet", "follow"
PING, HEALTH_CHECK = "ping", "health_check"
ERROR_SAMPLES = 3
# How long the processes may take to connect, then to report after their window.
READY_SECONDS = 60.0
REPORT_SECONDS = 120.0
START_DELAY_SECONDS = 0.2


@dataclass(frozen=True)
class Targets:
    url: str
    graph: str
    tweets: str
    timeline: str


@dataclass(frozen=True)
class LoadSpec:
    """What one load process does. `path` is rest or grpc; `ceiling` replaces the mix with the
    cheapest call of that path (GET /ping, which Envoy answers itself, or Health.Check on the
    timeline service)."""

    path: str
    targets: Targets
    # (user_id, bearer token) of the accounts the clients act as.
    accounts: tuple[tuple[int, str], ...]
    # User IDs that `follow` picks its followee from.
    population: tuple[int, ...]
    mix: Mix
    concurrency: int
    seconds: float
    warmup: float
    limit: int
    seed: int
    ceiling: bool = False
    grpc_channels: int = 4


@dataclass
class OpResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(text[:300])


@dataclass
class ProcessResult:
    ops: dict[str, OpResult]
    window: float
    cpu_seconds: float


@dataclass
class LoadOutcome:
    summaries: dict[str, Summary]
    error_samples: dict[str, list[str]]
    load_cpu_seconds: float
    window: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": {name: summary.as_dict() for name, summary in self.summaries.items()},
            "error_samples": self.error_samples,
            "load_cpu_seconds": self.load_cpu_seconds,
            "window_seconds": self.window,
        }


def run_load(specs: list[LoadSpec], *, on_start: Callable[[float], None] | None = None) -> LoadOutcome:
    """Run one process per spec; once every one has connected, all start at the same moment
    (`on_start` is told when). Blocks until all have reported."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[str, Any]] = context.Queue()
    go = context.Value("d", 0.0)
    processes = [
        context.Process(target=_process_main, args=(spec, results, go), name=f"chirp-bench-load-{i}")
        for i, spec in enumerate(specs)
    ]
    for process in processes:
        process.start()
    collected: list[ProcessResult] = []
    try:
        ready = 0
        while ready < len(processes):
            kind, item = _next(results, time.time() + READY_SECONDS)
            if kind != "ready":
                raise RuntimeError(f"a load process failed before starting: {item}")
            ready += 1
        start_at = time.time() + START_DELAY_SECONDS
        go.value = start_at
        if on_start is not None:
            on_start(start_at)
        deadline = start_at + max(spec.seconds + spec.warmup for spec in specs) + REPORT_SECONDS
        while len(collected) < len(processes):
            kind, item = _next(results, deadline)
            if kind != "result":
                raise RuntimeError(f"a load process failed: {item}")
            collected.append(item)
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    return merge(collected)


def _next(results: multiprocessing.Queue[tuple[str, Any]], deadline: float) -> tuple[str, Any]:
    try:
        return results.get(timeout=max(0.1, deadline - time.time()))
    except queue.Empty:
        raise RuntimeError("a load process did not report in time") from None


def merge(results: list[ProcessResult]) -> LoadOutcome:
    """One summary per operation over all processes; throughput adds up per process."""
    names = sorted({name for result in results for name in result.ops})
    summaries: dict[str, Summary] = {}
    samples: dict[str, list[str]] = {}
    window = max((result.window for result in results), default=0.0)
    for name in names:
        parts = [result.ops[name] for result in results if name in result.ops]
        latencies = [value for part in parts for value in part.latencies]
        merged = summarize(latencies, errors=sum(part.errors for part in parts), seconds=window)
        throughput = sum(
            len(result.ops[name].latencies) / result.window
            for result in results
            if name in result.ops and result.window > 0
        )
        summaries[name] = replace(merged, throughput=throughput)
        samples[name] = [text for part in parts for text in part.samples][:ERROR_SAMPLES]
    return LoadOutcome(summaries, samples, sum(result.cpu_seconds for result in results), window)


def _process_main(spec: LoadSpec, results: multiprocessing.Queue[tuple[str, Any]], go: Any) -> None:
    try:
        results.put(("result", asyncio.run(_drive(spec, results, go))))
    except BaseException as exc:  # reported to the parent, which fails the phase
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def _wait_for_go(go: Any) -> float:
    """The start time the parent sets once every load process is ready (polled: a shared double)."""
    while not go.value:
        time.sleep(0.005)
    return float(go.value)


Operation = Callable[[random.Random], Awaitable[str | None]]


async def _drive(spec: LoadSpec, results: multiprocessing.Queue[tuple[str, Any]], go: Any) -> ProcessResult:
    client = _RestClient(spec) if spec.path == "rest" else _GrpcClient(spec)
    await client.open()
    results.put(("ready", None))
    start_at = await asyncio.to_thread(_wait_for_go, go)
    try:
        operations = client.operations()
        weights = [spec.mix.read, spec.mix.tweet, spec.mix.follow]
        names = [PING if spec.path == "rest" else HEALTH_CHECK] if spec.ceiling else [READ, TWEET, FOLLOW]
        ops = {name: OpResult() for name in names}
        cpu_began = time.process_time()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        window_start = max(start_at, time.time()) + spec.warmup
        end = window_start + spec.seconds

        async def client_loop(index: int) -> None:
            rng = random.Random(spec.seed * 1_000 + index)
            while (began_wall := time.time()) < end:
                name = names[0] if spec.ceiling else rng.choices(names, weights)[0]
                began = time.perf_counter()
                try:
                    error = await operations[name](rng)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                took = time.perf_counter() - began
                if began_wall < window_start or time.time() > end:
                    continue
                if error is None:
                    ops[name].latencies.append(took)
                else:
                    ops[name].fail(error)

        await asyncio.gather(*(client_loop(index) for index in range(spec.concurrency)))
        return ProcessResult(ops, spec.seconds, time.process_time() - cpu_began)
    finally:
        await client.close()


class _RestClient:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.counter = 0
        self.http: Any = None

    async def open(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.spec.concurrency)
        self.http = aiohttp.ClientSession(base_url=self.spec.targets.url, connector=connector)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    def operations(self) -> dict[str, Operation]:
        return {READ: self.read, TWEET: self.tweet, FOLLOW: self.follow, PING: self.ping}

    async def _call(self, method: str, path: str, token: str = "", **kwargs: Any) -> str | None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, path, headers=headers, **kwargs) as response:
            body = await response.read()
            if response.status >= 300:
                return f"{method} {path.split('?')[0]}: {response.status} {body[:200]!r}"
        return None

    async def read(self, rng: random.Random) -> str | None:
        user_id, token = rng.choice(self.spec.accounts)
        params = {"user_id": str(user_id), "limit": str(self.spec.limit)}
        return await self._call("GET", "/timeline", token, params=params)

    async def tweet(self, rng: random.Random) -> str | None:
        user_id, token = rng.choice(self.spec.accounts)
        self.counter += 1
        body = {"user_id": str(user_id), "content": _content(self.spec.seed, self.counter)}
        return await self._call("POST", "/tweets", token, json=body)

    async def follow(self, rng: random.Random) -> str | None:
        user_id, token = rng.choice(self.spec.accounts)
        followee = _other(rng, self.spec.population, user_id)
        body = {"follower_id": str(user_id), "followee_id": str(followee)}
        return await self._call("POST", "/follow", token, json=body)

    async def ping(self, rng: random.Random) -> str | None:
        return await self._call("GET", "/ping")


class _GrpcClient:
    """Several channels, each with connections of its own (a local subchannel pool), calls spread
    round robin over every address of the target (bench.probes.LOCAL_POOL)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.counter = 0
        self.channels: list[Any] = []
        self.next = 0

    async def open(self) -> None:
        import grpc

        from bench.probes import LOCAL_POOL

        options = LOCAL_POOL
        for target in (self.spec.targets.timeline, self.spec.targets.tweets, self.spec.targets.graph):
            for _ in range(self.spec.grpc_channels):
                self.channels.append(grpc.aio.insecure_channel(target, options=options))
        from grpc_health.v1 import health_pb2_grpc

        from chirp.graph.v1 import graph_pb2_grpc
        from chirp.timeline.v1 import timeline_pb2_grpc
        from chirp.tweets.v1 import tweets_pb2_grpc

        n = self.spec.grpc_channels
        self.timeline = [timeline_pb2_grpc.TimelineServiceStub(c) for c in self.channels[:n]]
        self.health = [health_pb2_grpc.HealthStub(c) for c in self.channels[:n]]
        self.tweets = [tweets_pb2_grpc.TweetServiceStub(c) for c in self.channels[n : 2 * n]]
        self.graph = [graph_pb2_grpc.GraphServiceStub(c) for c in self.channels[2 * n :]]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    def operations(self) -> dict[str, Operation]:
        return {READ: self.read, TWEET: self.tweet, FOLLOW: self.follow, HEALTH_CHECK: self.health_check}

    def _pick(self, stubs: list[Any]) -> Any:
        self.next += 1
        return stubs[self.next % len(stubs)]

    async def _call(self, call: Awaitable[Any]) -> str | None:
        import grpc

        try:
            await call
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name}: {error.details()}"
        return None

    async def read(self, rng: random.Random) -> str | None:
        from chirp.timeline.v1 import timeline_pb2

        user_id, _ = rng.choice(self.spec.accounts)
        request = timeline_pb2.GetHomeTimelineRequest(user_id=user_id, limit=self.spec.limit)
        return await self._call(self._pick(self.timeline).GetHomeTimeline(request, metadata=_as(user_id)))

    async def tweet(self, rng: random.Random) -> str | None:
        from chirp.tweets.v1 import tweets_pb2

        user_id, _ = rng.choice(self.spec.accounts)
        self.counter += 1
        request = tweets_pb2.CreateTweetRequest(
            user_id=user_id, content=_content(self.spec.seed, self.counter)
        )
        return await self._call(self._pick(self.tweets).CreateTweet(request, metadata=_as(user_id)))

    async def follow(self, rng: random.Random) -> str | None:
        from chirp.graph.v1 import graph_pb2

        user_id, _ = rng.choice(self.spec.accounts)
        request = graph_pb2.FollowRequest(
            follower_id=user_id, followee_id=_other(rng, self.spec.population, user_id)
        )
        return await self._call(self._pick(self.graph).Follow(request, metadata=_as(user_id)))

    async def health_check(self, rng: random.Random) -> str | None:
        from grpc_health.v1 import health_pb2

        return await self._call(self._pick(self.health).Check(health_pb2.HealthCheckRequest(service="")))


def _as(user_id: int) -> tuple[tuple[str, str], ...]:
    from chirp_core.rpc import USER_ID_HEADER

    return ((USER_ID_HEADER, str(user_id)),)


def _other(rng: random.Random, population: tuple[int, ...], user_id: int) -> int:
    while (followee := rng.choice(population)) == user_id:
        pass
    return followee


def _content(seed: int, counter: int) -> str:
    return f"load tweet {seed}-{counter}: the quick brown fox jumps over the lazy dog, again and again"
