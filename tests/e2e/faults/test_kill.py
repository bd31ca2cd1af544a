"""kill -9 during a burst of tweets from an author with 200 warm followers, through a real
`chirp up`: no acknowledged tweet is lost, and every follower's timeline is complete within 10 s
of the restart, whichever part died."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers.chirp_process import (
    Burst,
    ChirpUp,
    make_audience,
    missing_tweets,
    port_is_free,
    wait_complete,
)

FOLLOWERS = 200

pytestmark = pytest.mark.skipif(
    os.environ.get("CHIRP_TEST_DATABASE_URL") is not None, reason="kills the embedded servers"
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Outside pytest's own temporary root, which another pytest run may lock down (0700) while
    PostgreSQL, running as its own user, still needs to reach its directory."""
    directory = Path(tempfile.mkdtemp(prefix="chirp-faults-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def chirp(data_dir: Path) -> ChirpUp:
    return ChirpUp(data_dir)


def report(what: str, burst: Burst, seconds: float) -> None:
    print(
        f"\n{what}: {len(burst.acknowledged)} tweets acknowledged, {burst.failures} failed calls, "
        f"0 lost; {FOLLOWERS} timelines complete {seconds:.2f}s after the restart"
    )


def test_kill_9_of_the_whole_stack_loses_no_acknowledged_tweet(chirp: ChirpUp) -> None:
    stack = chirp
    stack.start()
    try:
        audience = make_audience(stack, FOLLOWERS)
        with Burst(stack, audience.author) as burst:
            burst.wait_for(40)
            stack.kill_all()  # chirp up, PostgreSQL, Redis, Envoy: SIGKILL, all at once
        for port in stack.ports.values():
            assert port_is_free(port), f"port {port} still held after the kill"
        restarted = stack.start()
        assert missing_tweets(stack, burst.acknowledged) == []
        seconds = wait_complete(stack, audience, burst.acknowledged, restarted)
        report("kill -9 of the whole stack", burst, seconds)
    finally:
        stack.stop()


def test_kill_9_of_redis_is_restarted_and_loses_nothing(chirp: ChirpUp) -> None:
    stack = chirp
    stack.start()
    try:
        audience = make_audience(stack, FOLLOWERS)
        old = stack.part("redis-server")
        with Burst(stack, audience.author) as burst:
            burst.wait_for(30)
            old.kill()
            new = stack.wait_for_new("redis-server", old.pid)
            restarted = time.monotonic()
            burst.wait_for(len(burst.acknowledged) + 20)  # writes go on after the restart
        assert new.is_running()
        assert missing_tweets(stack, burst.acknowledged) == []
        seconds = wait_complete(stack, audience, burst.acknowledged, restarted)
        report("kill -9 of Redis", burst, seconds)
    finally:
        stack.stop()


def test_kill_9_of_postgres_is_restarted_and_loses_nothing(chirp: ChirpUp) -> None:
    stack = chirp
    stack.start()
    try:
        audience = make_audience(stack, FOLLOWERS)
        old = stack.part("postgres")
        with Burst(stack, audience.author) as burst:
            burst.wait_for(30)
            old.kill()
            stack.wait_for_new("postgres", old.pid)
            restarted = time.monotonic()
            burst.wait_for(len(burst.acknowledged) + 20, within=90)  # writes resume
        assert missing_tweets(stack, burst.acknowledged) == []
        seconds = wait_complete(stack, audience, burst.acknowledged, restarted)
        report("kill -9 of PostgreSQL", burst, seconds)
    finally:
        stack.stop()


def test_kill_9_of_envoy_is_restarted(chirp: ChirpUp) -> None:
    import urllib.request

    stack = chirp
    stack.start()
    try:
        audience = make_audience(stack, 20)
        old = stack.part("envoy")
        with Burst(stack, audience.author) as burst:
            burst.wait_for(10)
            old.kill()
            stack.wait_for_new("envoy", old.pid)
            restarted = time.monotonic()
            burst.wait_for(len(burst.acknowledged) + 10)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{stack.url}/healthz", timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "Envoy did not answer again"
                time.sleep(0.1)
        assert missing_tweets(stack, burst.acknowledged) == []
        wait_complete(stack, audience, burst.acknowledged, restarted)
    finally:
        stack.stop()


def test_kill_9_of_a_worker_process_and_its_relay_loses_nothing(data_dir: Path) -> None:
    """With --processes 2 each worker runs the services, their outbox relays and fan-out workers:
    killing one mid-burst kills a relay between any two of its steps."""
    stack = ChirpUp(data_dir, processes=2)
    stack.start()
    try:
        audience = make_audience(stack, FOLLOWERS)
        with Burst(stack, audience.author) as burst:
            burst.wait_for(30)
            victim = stack.workers()[0]
            victim.kill()
            restarted = time.monotonic()
            deadline = time.monotonic() + 120
            while len(stack.workers()) < 2 or victim.pid in {w.pid for w in stack.workers()}:
                assert time.monotonic() < deadline, "the worker was not started again"
                time.sleep(0.1)
            burst.wait_for(len(burst.acknowledged) + 20)
        assert missing_tweets(stack, burst.acknowledged) == []
        seconds = wait_complete(stack, audience, burst.acknowledged, restarted)
        report("kill -9 of a worker", burst, seconds)
    finally:
        stack.stop()


def test_kill_9_of_chirp_up_itself_leaves_no_server_behind(chirp: ChirpUp) -> None:
    stack = chirp
    stack.start()
    parts = stack.tree()[1:]
    assert {"postgres", "redis-server", "envoy"} <= {p.name() for p in parts}
    assert stack.process is not None
    stack.process.kill()  # only chirp up: its servers must not outlive it
    stack.process.wait(timeout=30)
    _gone, alive = psutil.wait_procs(parts, timeout=60)
    assert not alive, f"still running after chirp up died: {[(p.pid, p.name()) for p in alive]}"
    for name, port in stack.ports.items():
        assert port_is_free(port), f"the {name} port {port} is still held"
    stack.stop()
