"""The microblog phase's pieces: its graph, the wrk script (run by a real wrk against a small
HTTP server) and the parsing of its figures, Redis bytes per warm timeline against a real Redis,
the report's hot-path rows and the flags."""

from __future__ import annotations

import collections
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from aiohttp import web

from bench import hotpath, wrk
from bench.config import FULL, QUICK, build_parser, config_from_args
from bench.microblog import make_seed_plan
from bench.probes import cold_readers, timeline_store, warm_timeline_bytes
from bench.publish import README_END, README_START, publish_microblog
from bench.report import markdown
from bench.stackctl import stack_settings
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_core.settings import Settings
from timeline_svc.models import Entry

NOW_MS = 1_760_000_000_000

# What wrk's `done` prints through the generated script.
WRK_LINE = (
    "chirp-wrk requests=1200 duration_us=2000000 bytes=99 connect=0 read=1 write=0 status=200 "
    "timeout=2 p50_us=1500.0 p90_us=2500.0 p99_us=9000.0 max_us=20000.0 mean_us=1800.5"
)


def test_seed_plan_is_the_uniform_graph_split_between_grpc_and_copy() -> None:
    config = replace(
        FULL,
        microblog_users=50,
        microblog_follows=10,
        microblog_tweets=3,
        microblog_grpc_follows=120,
        microblog_grpc_tweets=40,
    )
    plan = make_seed_plan(config, NOW_MS)
    ids = plan.user_ids
    copied = [
        (ids[a], ids[b]) for a, b in zip(plan.copied.follower_idx, plan.copied.followee_idx, strict=True)
    ]
    edges = [*plan.follows, *copied]
    assert plan.shape() == {
        "users": 50,
        "follows": 500,
        "tweets": 150,
        "grpc_follows": 120,
        "grpc_tweets": 40,
        "copied_follows": 380,
        "copied_tweets": 110,
    }
    assert len(set(edges)) == 500 and all(a != b for a, b in edges)
    assert collections.Counter(a for a, _ in edges) == {user_id: 10 for user_id in ids}
    assert collections.Counter(author for author, _ in plan.tweets).most_common(1)[0][1] == 1
    # The copied follower counts are the copied edges' only: gRPC adds the rest.
    assert sum(plan.copied.follower_counts()) == 380
    assert list(plan.copied.tweet_ids) == sorted(set(plan.copied.tweet_ids))
    again = make_seed_plan(config, NOW_MS)
    assert again.follows == plan.follows and again.tweets == plan.tweets


def test_seed_plan_seeds_everything_over_grpc_by_default() -> None:
    config = replace(FULL, microblog_users=20, microblog_follows=19, microblog_tweets=2)
    plan = make_seed_plan(config, NOW_MS)
    assert plan.shape()["grpc_follows"] == 380 and plan.shape()["copied_follows"] == 0
    assert plan.shape()["grpc_tweets"] == 40 and plan.shape()["copied_tweets"] == 0
    assert plan.copied.users == 20


def test_wrk_script_rotates_every_path_with_its_token() -> None:
    paths = wrk.timeline_paths([11, 22], 20)
    assert paths == ["/timeline?user_id=11&limit=20", "/timeline?user_id=22&limit=20"]
    text = wrk.script([(paths[0], "tok-a"), (paths[1], "tok.b_c"), ("/ping", "")])
    assert '{"/timeline?user_id=11&limit=20", "tok-a"}' in text
    assert '{"/timeline?user_id=22&limit=20", "tok.b_c"}' in text
    assert '"Bearer " .. item[2]' in text and "function done(summary, latency, requests)" in text
    with pytest.raises(ValueError):
        wrk.script([])
    with pytest.raises(ValueError):
        wrk.script([("/timeline", "tök")])
    with pytest.raises(ValueError):
        wrk.script([("/timeline", 'a"\n')])


def test_wrk_output_is_parsed_into_a_summary_in_milliseconds() -> None:
    found = wrk.parse("Running 2s test @ http://x\n  1 threads and 4 connections\n" + WRK_LINE + "\n")
    assert found.requests == 1200 and found.status == 200 and found.timeout == 2
    assert found.errors == 203 and found.ok == 1000
    summary = found.summary()
    assert summary["count"] == 1000 and summary["errors"] == 203
    assert summary["throughput"] == pytest.approx(500.0)
    assert summary["p50"] == pytest.approx(1.5) and summary["p99"] == pytest.approx(9.0)
    assert summary["max"] == pytest.approx(20.0) and summary["seconds"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no chirp-wrk line"):
        wrk.parse("Running 2s test\n")
    with pytest.raises(ValueError, match="lacks p99_us"):
        wrk.parse(WRK_LINE.replace(" p99_us=9000.0", ""))


def test_wrk_command_uses_one_thread_and_whole_seconds(tmp_path: Path) -> None:
    command = wrk.command("/usr/bin/wrk", "http://h:1", tmp_path / "s.lua", connections=16, seconds=3.6)
    assert command[command.index("--threads") + 1] == "1"
    assert command[command.index("--connections") + 1] == "16"
    assert command[command.index("--duration") + 1] == "4s"
    assert command[-1] == "http://h:1"


@pytest.mark.skipif(wrk.find_wrk() is None, reason="wrk is not installed")
async def test_wrk_sends_each_path_with_its_bearer_token(tmp_path: Path) -> None:
    seen: collections.Counter[tuple[str, str]] = collections.Counter()

    async def answer(request: web.Request) -> web.Response:
        seen[(request.path_qs, request.headers.get("Authorization", ""))] += 1
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        requests = [(path, f"token{i}") for i, path in enumerate(wrk.timeline_paths([1, 2, 3], 20))]
        found, cpu = await wrk.run(
            str(wrk.find_wrk()),
            f"http://127.0.0.1:{port}",
            requests,
            connections=2,
            seconds=1,
            folder=tmp_path,
        )
    finally:
        await runner.cleanup()
    assert set(seen) == {(path, f"Bearer {token}") for path, token in requests}
    assert 0 < found.requests <= sum(seen.values())
    assert found.errors == 0 and found.ok == found.requests
    assert cpu >= 0


async def test_bytes_per_warm_timeline_sum_memory_usage_of_the_store_keys(
    redis_server: EmbeddedRedis,
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        store = timeline_store(client, "mbtest")
        # Two warm timelines, written by the store itself in its own layout.
        for reader, followees, count in ((1, range(2, 9), 30), (2, [5], 10)):
            assert await store.begin_build(reader)
            entries = [Entry(1_000 + i, 5) for i in range(count, 0, -1)]
            await store.finish_build(reader, list(followees), entries, 1)
        expected = [
            sum(
                [
                    await client.memory_usage(store.timeline_key(reader), samples=0) or 0,
                    await client.memory_usage(store.following_key(reader), samples=0) or 0,
                ]
            )
            for reader in (1, 2)
        ]
        members = [await client.scard(store.following_key(reader)) for reader in (1, 2)]
        versions = [
            await client.memory_usage(store.versions_key(reader), samples=0) or 0 for reader in (1, 2)
        ]
    finally:
        await client.aclose()
    found = await warm_timeline_bytes(redis_server.url, "mbtest", [1, 2, 3])
    assert found["readers"] == 3 and found["warm"] == 2 and found["not_warm"] == 1
    assert found["bytes"] == pytest.approx(sum(expected) / 2)
    assert found["timeline_entries"] == pytest.approx(20.0)
    assert found["following_entries"] == pytest.approx(sum(members) / 2)
    assert found["keys_of_first_reader"] == [store.timeline_key(1), store.following_key(1)]
    assert found["reader_bytes"] == pytest.approx((sum(expected) + sum(versions)) / 2)
    assert await cold_readers(redis_server.url, "mbtest", [1, 2, 3]) == {3}


def _read_run(throughput: float, p50: float, p99: float, cpu: dict[str, float], count: int) -> dict[str, Any]:
    op = {"count": count, "errors": 0, "throughput": throughput, "p50": p50, "p99": p99}
    return {"ops": {"timeline_read": op}, "cpu_seconds": cpu}


def _ceiling(throughput: float) -> dict[str, Any]:
    return {
        "ops": {"health_check": {"count": 1, "errors": 0, "throughput": throughput, "p50": 1.0, "p99": 2.0}}
    }


def _results() -> dict[str, Any]:
    cpu = {
        "envoy": 0.5,
        "stack": 3.0,
        "worker0": 2.0,
        "worker1": 1.0,
        "redis": 0.2,
        "postgres": 0.3,
        "load": 0.1,
    }
    warm = {
        "readers": 10, "warm": 9, "not_warm": 1, "keys_of_first_reader": ["chirp:tl:1", "chirp:fl:1"],
        "bytes": 1500.0, "timeline_bytes": 1000.0, "following_bytes": 500.0, "timeline_entries": 20.0,
        "following_entries": 5.0,
    }  # fmt: skip
    return {
        "started_at": "now",
        "machine": {"cpu_count": 2, "memory_gib": 4, "load_average": [1.0, 1.0, 1.0]},
        "config": {
            **{key: value for key, value in vars(QUICK).items() if key != "mix"},
            "microblog_seconds": 4.0,
        },
        "microblog": {
            "mode": "hybrid",
            "processes": 2,
            "graph": {
                "users": 10,
                "follows": 50,
                "tweets": 20,
                "grpc_follows": 30,
                "grpc_tweets": 20,
                "copied_follows": 20,
                "copied_tweets": 0,
            },
            "seeding": {
                "follows": {
                    "ok": 30,
                    "errors": 0,
                    "concurrency": 16,
                    "per_second": 300.0,
                    "latency": {"p50": 1.0, "p99": 3.0},
                    "cpu_seconds": {"stack": 0.06, "postgres": 0.03},
                },
                "tweets": {
                    "ok": 20,
                    "errors": 1,
                    "concurrency": 16,
                    "per_second": 250.0,
                    "latency": {"p50": 2.0, "p99": 4.0},
                    "cpu_seconds": {"stack": 0.05},
                },
            },
            "runs": [
                {
                    "clients": 4,
                    "rest": {**_read_run(400.0, 5.0, 12.0, cpu, 1000), "tool": "wrk"},
                    "grpc": _read_run(800.0, 2.5, 6.0, cpu, 2000),
                    "ceiling": _ceiling(3200.0),
                }
            ],
            "redis": warm,
            "first_reads": {"p50": 3.0, "p99": 9.0, "errors": 0, "passes": 2, "not_warm": 1},
        },
    }


def test_hot_path_rows_put_each_read_rate_beside_the_ceiling() -> None:
    paths = hotpath.hot_paths(_results())
    assert [(path.label, path.clients, path.rest_tool) for path in paths] == [("microblog, hybrid", 4, "wrk")]
    (row,) = hotpath.throughput_rows(paths)
    assert row[2] == "400.0 (wrk)" and row[3] == "800.0" and row[4] == "3,200"
    assert row[5:8] == ["12%", "25%", "50%"]
    assert row[8] == "5.00 / 12.00" and row[9] == "2.50 / 6.00"


def test_cpu_rows_show_each_worker_apart_per_request() -> None:
    header, rows = hotpath.cpu_rows(hotpath.hot_paths(_results()))
    assert header[3:] == [
        "Envoy",
        "Python workers",
        "worker0",
        "worker1",
        "Redis",
        "PostgreSQL",
        "load generator",
        "all but load",
    ]
    rest, grpc = rows
    # 1,000 REST reads: 0.5 s of Envoy is 0.5 ms a read; the workers 3 ms, worker0 2, worker1 1.
    assert rest[2] == "REST" and rest[3:8] == ["0.500", "3.000", "2.000", "1.000", "0.200"]
    assert rest[-1] == "4.000"
    assert grpc[2] == "gRPC" and grpc[5] == "1.000"


def test_seeding_and_redis_rows() -> None:
    results = _results()
    follows, tweets = hotpath.seeding_rows(results["microblog"])
    assert follows[:6] == ["Follow", "30", "16", "300.0", "1.00 / 3.00", "0"]
    assert follows[6:8] == ["2.000", "1.000"]
    assert tweets[0] == "CreateTweet" and tweets[5] == "1" and tweets[7] == "-"
    (redis_row,) = hotpath.redis_rows(results)
    assert redis_row[:7] == ["microblog", "9 of 10", "1,500", "1,000", "20.0", "500", "5.0"]
    assert "`chirp:tl:1`" in redis_row[7]


def test_a_microblog_only_report_has_its_own_header_and_the_hot_path() -> None:
    text = markdown(_results(), "chirp bench --microblog-only")
    assert text.startswith("# Chirp benchmark, microblog phase")
    assert "Microblog graph: 10 users" in text
    assert "first reads p50 3.0 ms, p99 9.0 ms; 2 passes warmed all but 1 timeline(s)" in text
    assert "## Hot path: warm home-timeline reads" in text
    assert "| Follow | 30 | 16 | 300.0 |" in text
    assert "## Summary" not in text


def test_mixed_runs_join_the_hot_path_with_the_runs_ceiling() -> None:
    results = _results()
    cpu = {"envoy": 1.0, "stack": 2.0, "worker0": 1.5, "worker1": 0.5}
    results["modes"] = {
        "push": {"rest": _read_run(100.0, 9.0, 30.0, cpu, 500), "grpc": _read_run(200.0, 4.0, 9.0, cpu, 900)}
    }
    results["ceiling"] = {"grpc": _ceiling(1000.0)}
    results["config"].update(load_processes=2, concurrency=8)
    mixed = hotpath.hot_paths(results)[-1]
    assert (mixed.label, mixed.clients) == ("push, mixed workload", 16)
    row = hotpath.throughput_rows([mixed])[0]
    assert row[5:8] == ["10%", "20%", "50%"]


def test_microblog_flags() -> None:
    parser = build_parser()
    config = config_from_args(
        parser.parse_args(["--quick", "--microblog-only", "--microblog-clients", "2,8"])
    )
    assert config.microblog_only and config.microblog_clients == (2, 8)
    assert config.microblog_seconds == QUICK.microblog_seconds < FULL.microblog_seconds
    assert config.microblog_grpc_follows == 3_000 and FULL.microblog_grpc_follows is None
    assert not config_from_args(parser.parse_args(["--no-microblog"])).microblog
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-microblog", "--microblog-only"])
    with pytest.raises(ValueError, match="--microblog-clients"):
        config_from_args(parser.parse_args(["--microblog-clients", "4,x"]))
    with pytest.raises(ValueError, match="--microblog-clients"):
        config_from_args(parser.parse_args(["--microblog-clients", "0"]))
    with pytest.raises(ValueError, match="--microblog-follows"):
        config_from_args(parser.parse_args(["--microblog-users", "10", "--microblog-follows", "10"]))


def test_publishing_a_microblog_run_writes_its_json_and_report(tmp_path: Path) -> None:
    root, out = tmp_path / "repo", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "README.md").write_text(f"# Chirp\n{README_START}\n{README_END}\n")
    results = {**_results(), "command": "chirp bench --microblog-only"}
    (out / "results.json").write_text(json.dumps(results, default=str))
    written = publish_microblog(out, root)
    docs = root / "docs" / "bench"
    assert written == [docs / "microblog.json", docs / "microblog.md"]
    assert json.loads((docs / "microblog.json").read_text())["microblog"]["graph"]["users"] == 10
    assert "| Follow | 30 | 16 | 300.0 |" in (docs / "microblog.md").read_text()
    # A whole run: its microblog phase alone is published.
    whole = {**results, "modes": {"push": {}}, "speedup": {}}
    (out / "results.json").write_text(json.dumps(whole, default=str))
    publish_microblog(out, root)
    assert "modes" not in json.loads((docs / "microblog.json").read_text())
    assert (docs / "microblog.md").read_text().startswith("# Chirp benchmark, microblog phase")
    del results["microblog"]
    (out / "results.json").write_text(json.dumps(results, default=str))
    with pytest.raises(ValueError, match="has no microblog phase"):
        publish_microblog(out, root)


def test_every_port_of_the_benchs_stack_is_a_free_one(tmp_path: Path) -> None:
    settings = stack_settings(
        tmp_path, "postgresql://h/db", "redis://h:1/0", mode="hybrid", threshold=10, overrides={}, processes=2
    )
    names = [f.name for f in fields(Settings) if f.name.endswith("_port") and "embedded" not in f.name]
    ports = {name: getattr(settings, name) for name in names if name != "envoy_admin_port"}
    defaults = Settings()
    assert all(port and port != getattr(defaults, name) for name, port in ports.items())
    assert len(set(ports.values())) == len(ports)


def test_worker_ports_of_the_benchs_stack_do_not_collide(tmp_path: Path) -> None:
    stride = int(getattr(Settings(), "worker_port_stride", 0)) or 1
    settings = stack_settings(
        tmp_path, "postgresql://h/db", "redis://h:1/0", mode="hybrid", threshold=10, overrides={}, processes=3
    )
    bases = [settings.graph_port, settings.tweets_port, settings.timeline_port, settings.auth_port]
    every = [base + index * stride for base in bases for index in range(3)]
    assert len(set(every)) == len(every) and max(every) <= 65535
