"""Percentiles, summaries, merging the load processes' results, and the report built from them."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import capacity, parse_targets
from bench.capacity import first_bottleneck, model
from bench.config import Mix, build_parser, config_from_args
from bench.costs import per_core
from bench.driver import OpResult, ProcessResult, merge
from bench.publish import readme_table
from bench.report import markdown, rest_of_grpc
from bench.stats import percentile, ratio, summarize


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_is_in_milliseconds_and_counts_errors_apart() -> None:
    summary = summarize([0.001, 0.002, 0.003, 0.004], errors=2, seconds=2.0)
    assert summary.count == 4 and summary.errors == 2
    assert summary.throughput == pytest.approx(2.0)
    assert summary.p50 == pytest.approx(2.5)
    assert summary.max == pytest.approx(4.0)
    assert summary.mean == pytest.approx(2.5)
    empty = summarize([], errors=1, seconds=1.0).as_dict()
    assert empty["p50"] is None and empty["throughput"] == 0.0


def test_ratio_is_none_when_it_cannot_be_computed() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(math.nan, 1.0) is None


def test_merge_adds_throughput_per_process_and_pools_latencies() -> None:
    fast = ProcessResult({"timeline_read": OpResult([0.001] * 100)}, window=10.0, cpu_seconds=1.0)
    slow = ProcessResult({"timeline_read": OpResult([0.003] * 50, errors=1, samples=["x"])}, 10.0, 2.0)
    outcome = merge([fast, slow])
    reads = outcome.summaries["timeline_read"]
    assert reads.count == 150 and reads.errors == 1
    assert reads.throughput == pytest.approx(15.0)
    assert reads.p50 == pytest.approx(1.0)
    assert reads.max == pytest.approx(3.0)
    assert outcome.load_cpu_seconds == 3.0
    assert outcome.error_samples["timeline_read"] == ["x"]


def test_mix_and_flags() -> None:
    assert Mix.parse("90,8,2") == Mix(0.9, 0.08, 0.02)
    with pytest.raises(ValueError):
        Mix.parse("1,2")
    config = config_from_args(
        build_parser().parse_args(["--quick", "--users", "4000", "--modes", "pull,hybrid"])
    )
    assert config.quick and config.users == 4000 and config.modes == ("pull", "hybrid")
    assert config_from_args(build_parser().parse_args(["--seconds", "5"])).rest_seconds == 5.0
    assert parse_targets("timeline=10.0.0.1:1")["timeline"] == "10.0.0.1:1"
    with pytest.raises(ValueError):
        parse_targets("nonsense")


def _op(throughput: float, p50: float, count: int = 100) -> dict[str, Any]:
    latencies = {"p50": p50, "p90": p50 * 2, "p99": p50 * 3, "max": p50 * 4, "mean": p50}
    return {"count": count, "errors": 0, "seconds": 10.0, "throughput": throughput, **latencies}


def _mode(reads: float, statements: float) -> dict[str, Any]:
    def run(reads: float, cpu: dict[str, float]) -> dict[str, Any]:
        return {
            "ops": {
                "timeline_read": _op(reads, 10.0, count=950),
                "tweet": _op(4.0, 20.0, 40),
                "follow": _op(1, 9, 10),
            },
            "window_seconds": 10.0,
            "cpu_seconds": cpu,
        }

    rest = run(reads, {"envoy": 0.5, "stack": 2.0, "postgres": 0.5, "redis": 0.1, "load": 0.4})
    grpc = run(reads * 2, {"envoy": 0.0, "stack": 1.5, "postgres": 0.5, "redis": 0.1, "load": 0.4})
    lag = {"p50": 5.0, "p99": 9.0, "errors": 0, "samples_ms": [5.0, 9.0]}
    return {
        "processes": 2,
        "rest": rest,
        "grpc": grpc,
        "writes": {
            "ops": {"tweet": _op(100.0, 5.0, 300)},
            "window_seconds": 3.0,
            "cpu_seconds": {"stack": 0.6, "postgres": 0.3, "redis": 0.03},
            "tail_cpu_seconds": {"stack": 0.3},
            "timelines_written": 1200.0,
        },
        "fanout_lag": {"ordinary": lag, "celebrity": lag},
        "cold_rebuild": _op(0, 30.0),
        "postgres": {"method": "counted", "statements_per_read": statements, "warm_read": _op(0, 3.0)},
        "redis": {
            "after_first_reads": {"used_memory": 2**20},
            "warm_reader_bytes": 1000.0,
            "timeline_bytes": 800.0,
            "timeline_entries": 8.0,
        },
    }


def results() -> dict[str, Any]:
    return {
        "started_at": "now",
        "machine": {"cpu_count": 2, "memory_gib": 4.0, "load_average": [0.5, 0.4, 0.3]},
        "dataset": {
            "users": 10,
            "follows": 20,
            "followees_median": 2,
            "followees_max": 5,
            "followers_median": 2,
            "followers_p99": 8,
            "followers_max": 9,
            "celebrities": 1,
            "celebrity_threshold": 8,
            "tweets": 30,
            "generate_seconds": 0.1,
            "load_seconds": 0.2,
            "rows_per_second": 300.0,
            "vacuum_seconds": 0.1,
        },
        "config": {
            "seed": 1,
            "mix": {"read": 0.95, "tweet": 0.04, "follow": 0.01},
            "load_processes": 2,
            "concurrency": 8,
            "timeline_limit": 20,
            "active_users": 5,
            "rest_seconds": 10,
            "grpc_seconds": 10,
            "lag_followers": 4,
            "lag_poll_seconds": 0.025,
            "lag_timeout_seconds": 30,
        },
        "modes": {"pull": _mode(300.0, 4.0), "hybrid": _mode(600.0, 0.0)},
        "ceiling": {
            "processes": 2,
            "rest": {"ops": {"ping": _op(1200.0, 5.0, 12000)}, "cpu_seconds": {"envoy": 1.2, "stack": 0.0}},
            "grpc": {"ops": {"health_check": _op(2400.0, 2.5, 24000)}, "cpu_seconds": {"stack": 4.8}},
        },
        "speedup": {
            "mode": "hybrid",
            "processes": [1, 2],
            "speedup": 1.5,
            "runs": {
                "1": {
                    "ops": {"timeline_read": _op(400.0, 9.0)},
                    "window_seconds": 10.0,
                    "cpu_seconds": {"envoy": 4.0, "stack": 6.0, "postgres": 0.0, "redis": 2.0, "load": 9.0},
                },
                "2": {
                    "ops": {"timeline_read": _op(600.0, 7.0)},
                    "window_seconds": 10.0,
                    "cpu_seconds": {"envoy": 5.0, "stack": 10.0, "postgres": 1.0, "redis": 4.0, "load": 9.0},
                },
            },
        },
    }


def test_per_core_charges_a_run_s_cpu_to_its_requests() -> None:
    figures = per_core(results())["hybrid"]
    assert figures["rest"]["requests"] == 1000
    assert figures["rest"]["stack_cpu_ms_per_request"] == pytest.approx(2.0)
    assert figures["rest"]["envoy_cpu_ms_per_request"] == pytest.approx(0.5)
    assert figures["grpc"]["stack_cpu_ms_per_request"] == pytest.approx(1.5)
    assert figures["grpc"]["envoy_cpu_ms_per_request"] == pytest.approx(0.0)
    assert figures["rest"]["requests_per_stack_cpu_second"] == pytest.approx(500.0)
    assert figures["writes"]["stack_cpu_ms_per_tweet"] == pytest.approx(3.0)
    assert figures["writes"]["timelines_written_per_tweet"] == pytest.approx(4.0)


def test_markdown_reports_each_mode_against_the_ceiling_and_pull() -> None:
    text = markdown(results(), "chirp bench --quick")
    assert "| hybrid | REST | 600.0 | 10.0 | 20.0 | 30.0 | 40.0 | 0 | 50% | 50% |" in text
    assert "| hybrid | gRPC | 1,200 | 10.0 | 20.0 | 30.0 | 40.0 | 0 | 50% | - |" in text
    assert "| pull | REST | 300.0 |" in text and "25%" in text
    assert "| REST reads / gRPC reads | 0.50 | 0.50 | 1.00x | pull = hybrid |" in text
    assert "| REST reads/s | 300.00 | 600.00 | 2.00x | hybrid |" in text
    assert "Speed-up from 1 to 2 processes: 1.50x" in text
    # 400 reads/s on 1.2 stack cores, 600 on 2.0 (the load generator's cores are not the stack's).
    per_core = "Reads/s per stack core (Envoy, Python workers, PostgreSQL, Redis): 333.3 with 1, 300.0 with 2"
    assert per_core + " (90% of 1's)." in text
    assert "| 1 | 400.0 | 9.0 |" in text and text.count("| 333.3 |") == 1
    assert "load average (1/5/15 min) 0.50 / 0.40 / 0.30" in text


def test_rest_reads_are_a_share_of_the_same_runs_grpc_reads() -> None:
    run = results()
    assert rest_of_grpc(run["modes"]["hybrid"]) == pytest.approx(0.5)
    run["modes"]["hybrid"]["grpc"]["ops"]["timeline_read"]["throughput"] = 800.0
    assert rest_of_grpc(run["modes"]["hybrid"]) == pytest.approx(0.75)
    del run["modes"]["hybrid"]["grpc"]
    assert rest_of_grpc(run["modes"]["hybrid"]) is None


def test_summary_shows_the_ping_ceiling_and_cpu_per_request_by_process() -> None:
    text = markdown(results(), "chirp bench --quick")
    # 600 REST reads/s against 1,200 /ping/s, and against 1,200 gRPC reads/s of the same mode.
    assert "| hybrid | 600.0 | 50% | 50% | 10.0 (2.00x) | 30.0 (2.00x) | 1,200 | 50% |" in text
    # Per mode, CPU ms per request: REST Envoy, workers, Redis, PostgreSQL; gRPC workers, Redis, PostgreSQL.
    assert "| hybrid | 0.50 | 2.00 | 0.100 | 0.50 | 1.50 | 0.100 | 0.50 |" in text
    # The ceiling's CPU per request: /ping costs Envoy only, Health.Check the workers only.
    assert "| REST | GET /ping (answered by Envoy itself) | 1,200 | 5.0 | 15.0 | 0 | 0.100 | 0.000 |" in text
    assert "Health.Check on the timeline service | 2,400 | 2.5 | 7.5 | 0 | - | 0.200 |" in text
    table = readme_table({**results(), "command": "chirp bench --quick"})
    assert "| mode | REST: Envoy | REST: Python workers |" in table


def test_the_gateway_costs_envoy_plus_the_auth_service() -> None:
    found = model(results())
    assert found is not None
    assert found["inputs"]["rest_envoy_ms"] == pytest.approx(0.5)
    gateway = next(line for line in found["lines"] if line["name"] == "gateway cores")
    reads = next(line for line in found["lines"] if line["name"] == "peak timeline reads")
    # 0.5 ms of Envoy + (2.0 - 1.5) ms of Python per REST read over a gRPC read.
    assert gateway["high"] == pytest.approx(reads["high"] * 1.0 / 1000)


def test_the_tenfold_case_and_what_gives_first() -> None:
    found = model(results())
    assert found is not None
    lines = {line["name"]: line for line in found["lines"]}
    reads = lines["peak timeline reads"]
    assert reads["x10"] == pytest.approx(10 * reads["high"])
    assert lines["gateway cores"]["x10"] == pytest.approx(10 * lines["gateway cores"]["high"])
    masters = lines["Redis Cluster masters"]
    assert masters["x10"] >= masters["high"] >= 1
    # More warm timelines than one Redis server holds: a Redis Cluster of several masters.
    assert lines["warm timelines one Redis server holds"]["high"] < capacity.DAU
    # With the primary within its budget, the largest fleet is named, and the primary's share said.
    fleets = {
        "the Redis Cluster": masters["high"],
        **{f"the {t} tier": lines[f"{t} instances"]["high"] for t in ("gateway", "timeline", "tweets")},
    }
    named = first_bottleneck(lines, "high")
    assert named.startswith(max(fleets, key=lambda f: fleets[f]))
    assert f"{masters['high']:,.0f} Cluster masters" in named
    assert "primary, which only a bigger server grows, is at" in named
    # With the primary past its budget and one Redis enough, the primary is named.
    small = {**lines, "Redis Cluster masters": {**masters, "high": 1.0}}
    small["share of one primary's budget"] = {"high": 1.5}
    assert first_bottleneck(small, "high").startswith("the PostgreSQL primary")
