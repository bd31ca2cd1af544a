"""`chirp up` as a user runs it: a real subprocess on an embedded PostgreSQL, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import redis

from chirp.graph.v1 import graph_pb2, graph_pb2_grpc
from chirp.users.v1 import users_pb2, users_pb2_grpc
from tests.helpers.api import as_user, free_port
from tests.helpers.chirp_process import chirp_up, free_worker_ports, processes_using


def create_user(address: str, handle: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        user = stub.CreateUser(
            users_pb2.CreateUserRequest(handle=handle, password="a long password"), timeout=10
        )
        return user.user_id


def get_user(address: str, user_id: int) -> users_pb2.User:
    with grpc.insecure_channel(address) as channel:
        return users_pb2_grpc.UserServiceStub(channel).GetUser(
            users_pb2.GetUserRequest(user_id=user_id), timeout=10
        )


@pytest.mark.skipif(
    os.environ.get("CHIRP_TEST_DATABASE_URL") is not None, reason="exercises the embedded database"
)
def test_restart_keeps_data_and_leaves_no_process_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "chirp-data"
    with chirp_up(data_dir) as started:
        assert started.graph.startswith("127.0.0.1:") and started.url.startswith("http://127.0.0.1:")
        assert started.seconds < 30
        user_id = create_user(started.graph, "survivor")
        assert processes_using(data_dir, "postgres"), "the embedded PostgreSQL should be running"
        assert processes_using(data_dir, "redis-server"), "the embedded Redis should be running"
    assert not processes_using(data_dir), "SIGTERM left a process of the stack running"

    with chirp_up(data_dir) as started:
        assert get_user(started.graph, user_id).handle == "survivor"
        media_url = media_upload_url(started.url)
        assert media_url == f"{started.url}/media/", "media URLs name the port Envoy got"
    assert not processes_using(data_dir)


def media_upload_url(api: str) -> str:
    """Where an upload grant, asked for over REST, says to send the bytes."""

    def post(path: str, body: dict[str, object], token: str = "") -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"{api}{path}", json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, str] = json.load(response)
            return answer

    post("/users", {"handle": "uploader", "password": "a long password"})
    token = post("/sessions", {"handle": "uploader", "password": "a long password"})["token"]
    grant = post("/media", {"content_type": "image/png", "size_bytes": 100}, token)
    url: str = grant["upload"]["url"]  # type: ignore[index]  # a nested object
    return url


def follow(address: str, follower_id: int, followee_id: int) -> None:
    with grpc.insecure_channel(address) as channel:
        graph_pb2_grpc.GraphServiceStub(channel).Follow(
            graph_pb2.FollowRequest(follower_id=follower_id, followee_id=followee_id),
            metadata=as_user(follower_id),
            timeout=10,
        )


def test_chirp_up_runs_the_relays_and_the_fanout_workers_asked_for(tmp_path: Path) -> None:
    redis_port = free_port()
    options = ("--redis-port", str(redis_port), "--fanout-workers", "3", "--metrics-port", "off")
    with chirp_up(tmp_path / "chirp-data", *options) as started:
        alice, bob = create_user(started.graph, "alice"), create_user(started.graph, "bob")
        follow(started.graph, alice, bob)
        with redis.Redis(port=redis_port) as client:
            # Each fan-out worker waits in its own XREADGROUP BLOCK; the relay hands the follow over.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = [c for c in client.client_list() if c["cmd"] == "xreadgroup" and "b" in c["flags"]]
                if len(waiting) == 3 and client.exists("chirp:{events}") and client.xlen("chirp:{events}"):
                    break
                time.sleep(0.1)
            assert len(waiting) == 3, client.client_list()
            events = [fields[b"type"] for _, fields in client.xrange("chirp:{events}")]
            assert b"followed" in events


def test_a_port_another_process_holds_stops_chirp_up_naming_it(tmp_path: Path) -> None:
    """Even a listener that allows port sharing (as gRPC servers do by default) is not joined."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
        env["CHIRP_JWKS_PORT"] = "0"
        ports = ["--tweets-port", "0", "--timeline-port", "0", "--http-port", "0", "--auth-port", "0"]
        finished = subprocess.run(
            [
                *(sys.executable, "-m", "chirp_app.cli", "up", "--data-dir", str(tmp_path / "data")),
                *("--graph-port", str(taken), *ports, "--metrics-port", "off"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output
    assert f"127.0.0.1:{taken}" in output and "taken" in output, output
    assert "chirp: ready" not in output
    assert not processes_using(tmp_path / "data"), "a failed start left a process behind"


def test_a_worker_port_another_process_holds_stops_chirp_up_naming_it(tmp_path: Path) -> None:
    """With --processes 2, worker 1 listens on each port + 100: a listener there, even one that
    allows port sharing, is not joined either."""
    graph, tweets, timeline, auth, http, jwks = (str(port) for port in free_worker_ports(6, 2))
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", int(timeline) + 100))
        holder.listen()
        taken = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHIRP_")}
        env["CHIRP_JWKS_PORT"] = jwks
        ports = ["--graph-port", graph, "--tweets-port", tweets, "--timeline-port", timeline]
        finished = subprocess.run(
            [
                *(sys.executable, "-m", "chirp_app.cli", "up", "--data-dir", str(tmp_path / "data")),
                *(*ports, "--auth-port", auth, "--http-port", http, "--metrics-port", "off"),
                *("--processes", "2"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output
    assert f"127.0.0.1:{taken}" in output and "taken" in output, output
    assert "chirp: ready" not in output
    assert not processes_using(tmp_path / "data"), "a failed start left a process behind"
