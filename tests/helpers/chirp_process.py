"""`chirp up` as a real process: chirp_up() for a run on ports of its own choosing (it prints
where it listens), ChirpUp for the fault tests (fixed free ports, so that a restart comes back on
the same ones, and the pid of every part), a warm audience, a burst of tweets, and the checks."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp.tweets.v1 import tweets_pb2, tweets_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from tests.helpers.api import as_user, free_ports

READY = re.compile(r"chirp: ready in [\d.]+s at (?P<url>http://\S+)")
START_SECONDS = 180.0
# The bound the issue sets: every follower's timeline complete this long after the restart.
COMPLETE_SECONDS = 10.0


READY_WITH_ADDRESSES = re.compile(
    r"chirp: ready in (?P<seconds>[\d.]+)s at (?P<url>\S+) .*"
    r"graph=(?P<graph>\S+) tweets=(?P<tweets>\S+) timeline=(?P<timeline>\S+)"
)


@dataclass(frozen=True)
class Started:
    url: str
    graph: str
    tweets: str
    timeline: str
    seconds: float


@contextmanager
def chirp_up(data_dir: Path, *extra: str) -> Iterator[Started]:
    """Run `chirp up` on free ports; yield where it listens and the seconds it took to be ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
    env["CHIRP_JWKS_PORT"] = "0"  # the signing keys' JWKS, which has no flag of its own
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chirp_app.cli",
            "up",
            "--data-dir",
            str(data_dir),
            "--graph-port",
            "0",
            "--tweets-port",
            "0",
            "--timeline-port",
            "0",
            "--http-port",
            "0",
            "--auth-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        match = None
        while match is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            match = READY_WITH_ADDRESSES.search(line)
        assert match is not None, "chirp up never became ready:\n" + "".join(output)
        yield Started(
            match["url"], match["graph"], match["tweets"], match["timeline"], float(match["seconds"])
        )
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output.append(rest)
    assert process.returncode == 0, "".join(output)


def processes_using(data_dir: Path, program: str = "") -> list[psutil.Process]:
    """Processes whose command line or working directory names data_dir (Redis rewrites its
    command line, but runs in its data directory), and `program`, when given."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        where = cmdline + " " + (proc.info["cwd"] or "")
        if str(data_dir.resolve()) in where and program in cmdline:
            found.append(proc)
    return found


def free_worker_ports(count: int, processes: int, stride: int = 100) -> list[int]:
    """`count` free ports p whose worker ports (p + i * stride for each of `processes` workers:
    chirp_app.processes.worker_ports) are all free too, and distinct."""
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < count:
        (first,) = free_ports(1)
        ports = [first + index * stride for index in range(processes)]
        if ports[-1] <= 65535 and not taken & set(ports) and all(map(port_is_free, ports)):
            chosen.append(first)
            taken.update(ports)
    return chosen


def port_is_free(port: int) -> bool:
    """No one listens on `port` (connections a killed server left in TIME_WAIT do not count: the
    servers bind with SO_REUSEADDR, as this probe does)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class ChirpUp:
    """One `chirp up` on `data_dir`, started and stopped as often as a test likes."""

    data_dir: Path
    processes: int = 1
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        names = ("graph", "tweets", "timeline", "auth", "http", "redis", "postgres")
        # Worker i of --processes N listens on each service port + i * 100.
        self.ports = dict(zip(names, free_worker_ports(len(names), self.processes), strict=True))

    def address(self, service: str) -> str:
        """A gRPC target naming every worker's `service` (one address with a single process): a
        channel without a balancing policy uses the first that answers."""
        addresses = [f"127.0.0.1:{self.ports[service] + index * 100}" for index in range(self.processes)]
        return addresses[0] if len(addresses) == 1 else "ipv4:" + ",".join(addresses)

    def start(self) -> float:
        """Start and wait for the ready line; returns when it came (time.monotonic())."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
        env["CHIRP_RATE_LIMITS"] = "off"
        env["CHIRP_JWKS_PORT"] = "0"  # a free port at each start: Envoy restarts with the stack
        p = self.ports
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "chirp_app.cli", "up", "--data-dir", str(self.data_dir)),
                *("--graph-port", str(p["graph"]), "--tweets-port", str(p["tweets"])),
                *("--timeline-port", str(p["timeline"]), "--auth-port", str(p["auth"])),
                *("--http-port", str(p["http"]), "--redis-port", str(p["redis"])),
                *("--postgres-port", str(p["postgres"]), "--metrics-port", "off"),
                *("--processes", str(self.processes), "--log-level", "WARNING"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                break
            self.output.append(line)
            match = READY.search(line)
            if match:
                self.url = match["url"]
                # Keep reading, so that the pipe never fills and stalls the stack.
                threading.Thread(target=self._drain, args=(stdout,), daemon=True).start()
                return time.monotonic()
        raise AssertionError("chirp up never became ready:\n" + "".join(self.output))

    def _drain(self, stdout: object) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed when the process is reaped
            for line in stdout:  # type: ignore[attr-defined]
                self.output.append(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self._reap()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tree(self) -> list[psutil.Process]:
        """chirp up and every process under it (PostgreSQL's backends included)."""
        parent = psutil.Process(self.pid)
        return [parent, *parent.children(recursive=True)]

    def part(self, name: str) -> psutil.Process:
        """The live child running `name`: redis-server, postgres (the postmaster), envoy."""
        for child in psutil.Process(self.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and name in child.name():
                    return child
            except psutil.Error:
                continue
        raise LookupError(f"no live {name} under chirp up (pid {self.pid})")

    def workers(self) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.pid).children():
            try:
                if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
            except psutil.Error:
                continue
        return found

    def kill_all(self) -> None:
        """SIGKILL to the whole tree at once, as a power cut would: nothing flushes anything."""
        everything = self.tree()
        for proc in everything:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        psutil.wait_procs(everything, timeout=30)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=30)
            if self.process.stdout is not None:
                self.process.stdout.close()
        self.process = None

    def wait_for_new(self, name: str, old_pid: int, within: float = 60.0) -> psutil.Process:
        """The `name` part started again after `old_pid` died (a new pid), once it answers."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                found = self.part(name)
            except LookupError:
                found = None
            if found is not None and found.pid != old_pid:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{name} was not started again within {within}s:\n" + "".join(self.output[-30:]))


def channel_options() -> list[tuple[str, int]]:
    # Reconnect at once after a restart instead of grpc's default backoff of up to two minutes.
    return [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


@dataclass
class Audience:
    author: int
    followers: list[int]


def make_audience(stack: ChirpUp, followers: int) -> Audience:
    """An author and `followers` users following them, each of whom read their timeline (warm)."""
    suffix = str(time.monotonic_ns())[-8:]
    with grpc.insecure_channel(stack.address("graph")) as graph_channel:
        users = users_pb2_grpc.UserServiceStub(graph_channel)
        graph = graph_pb2_grpc.GraphServiceStub(graph_channel)

        def new_user(handle: str) -> int:
            request = users_pb2.CreateUserRequest(handle=handle, password="a long password")
            return int(users.CreateUser(request, timeout=30).user_id)

        author = new_user(f"author{suffix}")
        audience = [new_user(f"f{i}x{suffix}") for i in range(followers)]
        for follower in audience:
            graph.Follow(
                graph_pb2.FollowRequest(follower_id=follower, followee_id=author),
                metadata=as_user(follower),
                timeout=30,
            )
    with grpc.insecure_channel(stack.address("timeline")) as channel:
        timeline = timeline_pb2_grpc.TimelineServiceStub(channel)
        for follower in audience:
            timeline.GetHomeTimeline(
                timeline_pb2.GetHomeTimelineRequest(user_id=follower, limit=100),
                metadata=as_user(follower),
                timeout=30,
            )
    return Audience(author, audience)


class Burst:
    """Tweets by one author, one after another, over gRPC, from a thread; `acknowledged` holds the
    IDs the service confirmed. Failures (the stack is being killed) are counted, not retried."""

    def __init__(self, stack: ChirpUp, author: int, *, pause: float = 0.01) -> None:
        self.stack = stack
        self.author = author
        self.pause = pause
        self.acknowledged: list[int] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Burst:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def wait_for(self, count: int, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} tweets acknowledged"
            time.sleep(0.01)

    def _run(self) -> None:
        number = 0
        with grpc.insecure_channel(self.stack.address("tweets"), options=channel_options()) as channel:
            tweets = tweets_pb2_grpc.TweetServiceStub(channel)
            while not self._stop.is_set():
                number += 1
                request = tweets_pb2.CreateTweetRequest(user_id=self.author, content=f"burst {number}")
                try:
                    tweet = tweets.CreateTweet(request, metadata=as_user(self.author), timeout=5)
                except grpc.RpcError:
                    self.failures += 1
                    time.sleep(0.05)
                    continue
                self.acknowledged.append(int(tweet.tweet_id))
                time.sleep(self.pause)


def missing_tweets(stack: ChirpUp, acknowledged: list[int]) -> list[int]:
    """Acknowledged tweets the tweets service does not have."""
    missing = []
    with grpc.insecure_channel(stack.address("tweets"), options=channel_options()) as channel:
        tweets = tweets_pb2_grpc.TweetServiceStub(channel)
        for tweet_id in acknowledged:
            try:
                tweets.GetTweet(tweets_pb2.GetTweetRequest(tweet_id=tweet_id), timeout=10)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
                missing.append(tweet_id)
    return missing


def incomplete_timelines(stack: ChirpUp, audience: Audience, acknowledged: list[int]) -> dict[int, int]:
    """Follower -> how many acknowledged tweets their home timeline lacks (only the incomplete)."""
    expected = set(acknowledged)
    lacking = {}
    with grpc.insecure_channel(stack.address("timeline"), options=channel_options()) as channel:
        timeline = timeline_pb2_grpc.TimelineServiceStub(channel)
        for follower in audience.followers:
            seen: set[int] = set()
            cursor = ""
            while True:
                page = timeline.GetHomeTimeline(
                    timeline_pb2.GetHomeTimelineRequest(user_id=follower, limit=100, cursor=cursor),
                    metadata=as_user(follower),
                    timeout=10,
                )
                seen.update(t.tweet_id for t in page.tweets)
                cursor = page.next_cursor
                if not cursor or expected <= seen:
                    break
            if not expected <= seen:
                lacking[follower] = len(expected - seen)
    return lacking


def wait_complete(stack: ChirpUp, audience: Audience, acknowledged: list[int], since: float) -> float:
    """Seconds after `since` when every follower's timeline held every acknowledged tweet; fails
    past COMPLETE_SECONDS with what was still missing."""
    lacking: dict[int, int] = {}
    while time.monotonic() < since + COMPLETE_SECONDS:
        try:
            lacking = incomplete_timelines(stack, audience, acknowledged)
        except grpc.RpcError as error:
            lacking = {-1: -1}
            last_error: Callable[[], object] = error.details  # type: ignore[attr-defined]
            print("timeline read failed:", last_error())
        if not lacking:
            return time.monotonic() - since
        time.sleep(0.2)
    raise AssertionError(
        f"{len(lacking)} of {len(audience.followers)} timelines still incomplete "
        f"{COMPLETE_SECONDS:.0f}s after the restart (follower -> tweets missing): "
        f"{dict(list(lacking.items())[:10])}"
    )
