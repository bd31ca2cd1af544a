"""results.json and the Markdown report (results.md, also printed): every figure the capacity
model quotes comes from here, computed from the measured results only."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench import capacity, hotpath
from bench.costs import CPU_PARTS, PATHS, per, per_core
from bench.stats import ratio

PART_LABELS = {
    "envoy": "Envoy",
    "stack": "Python workers",
    "redis": "Redis",
    "postgres": "PostgreSQL",
    "load": "load generator",
}


def num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 1000):
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _op(mode: dict[str, Any], path: str, op: str) -> dict[str, Any]:
    found: dict[str, Any] = mode.get(path, {}).get("ops", {}).get(op, {})
    return found


def ceiling_throughput(results: dict[str, Any], path: str) -> float | None:
    return _ceiling_op(results, path).get("throughput")


def markdown(results: dict[str, Any], command: str) -> str:
    sections: tuple[Callable[[dict[str, Any], str], list[str]], ...] = (
        _header, _summary, _reads, _writes, _state, _ratios, _ceiling, _speedup, _capacity, capacity.markdown,
        hotpath.markdown,
    )  # fmt: skip
    if not results.get("modes"):
        sections = (_microblog_header, hotpath.markdown)
    return "\n".join(line for section in sections for line in section(results, command))


def _header(results: dict[str, Any], command: str) -> list[str]:
    data, config = results["dataset"], results["config"]
    mix = config["mix"]
    return [
        f"# Chirp benchmark, {results.get('started_at', '')}",
        "",
        *header_line(results, command),
        f"Dataset (seed {config['seed']}): {data['users']:,} users, {data['follows']:,} follows (followees "
        f"per user: median {num(data['followees_median'], 0)}, max {data['followees_max']:,}; followers: "
        f"median {num(data['followers_median'], 0)}, p99 {data['followers_p99']:,}, max "
        f"{data['followers_max']:,}; {data['celebrities']} celebrities above "
        f"{data['celebrity_threshold']:,}), "
        f"{data['tweets']:,} tweets; generated in {data['generate_seconds']:.1f} s, loaded with COPY in "
        f"{data['load_seconds']:.1f} s ({data['rows_per_second']:,.0f} rows/s) + "
        f"{data['vacuum_seconds']:.1f} s VACUUM ANALYZE.",
        "",
        f"Workload: closed loop, {config['load_processes']} load processes x {config['concurrency']} "
        f"clients; {mix['read']:.0%} timeline reads (limit {config['timeline_limit']}), {mix['tweet']:.0%} "
        f"tweets, {mix['follow']:.0%} follows by {config['active_users']} logged-in accounts; "
        f"{config['rest_seconds']:.0f} s through Envoy (the REST gateway), {config['grpc_seconds']:.0f} s "
        f"straight to the services over gRPC. Stack: {_processes(results['modes'])}; PostgreSQL, Redis and "
        "the load generator share the same cores; loopback only.",
        "",
    ]


def _microblog_header(results: dict[str, Any], command: str) -> list[str]:
    return [
        f"# Chirp benchmark, microblog phase, {results.get('started_at', '')}",
        "",
        *header_line(results, command),
        *hotpath.header(results),
    ]


def header_line(results: dict[str, Any], command: str) -> list[str]:
    """The command, the machine, its load and the run's length."""
    machine = results["machine"]
    return [
        f"`{command}`: {machine['cpu_count']} cores, {machine['memory_gib']} GiB RAM; load average "
        f"(1/5/15 min) {loads(machine['load_average'])} at the start, "
        f"{loads(machine.get('load_average_end', []))} at the end; "
        f"{results.get('duration_seconds', 0):.0f} s in all.",
        "",
    ]


def _summary(results: dict[str, Any], command: str) -> list[str]:
    return [*summary_table(results), *cpu_table(results)]


def summary_table(results: dict[str, Any]) -> list[str]:
    """Per mode, the headline figures, each read figure next to the ceiling of its path."""
    rows = []
    for name, mode in results["modes"].items():
        row = [name]
        for path, _ in PATHS:
            read = _op(mode, path, "timeline_read")
            ceiling = _ceiling_op(results, path)
            row += [
                num(read.get("throughput")),
                _pct(ratio(read.get("throughput"), ceiling.get("throughput"))),
            ]
            if path == "rest":
                row.append(_pct(rest_of_grpc(mode)))
            row += [
                f"{num(read.get('p50'))} ({times(ratio(read.get('p50'), ceiling.get('p50')))})",
                f"{num(read.get('p99'))} ({times(ratio(read.get('p99'), ceiling.get('p99')))})",
            ]
        lag = mode.get("fanout_lag", {})
        rest_p99 = _ceiling_op(results, "rest").get("p99")
        row += [
            _against(_op(mode, "rest", "tweet").get("p99"), rest_p99),
            _against(lag.get("ordinary", {}).get("p99"), rest_p99),
            _against(lag.get("celebrity", {}).get("p99"), rest_p99),
        ]
        rows.append(row)
    header = [
        "mode", "REST reads/s", "of ceiling", "of gRPC reads", "REST p50 ms (x ceiling)",
        "REST p99 ms (x ceiling)",
        "gRPC reads/s", "of ceiling", "gRPC p50 ms (x ceiling)", "gRPC p99 ms (x ceiling)",
        "tweet p99 ms (x ceiling)", "fan-out lag p99 ms, ordinary (x ceiling)",
        "fan-out lag p99 ms, celebrity (x ceiling)",
    ]  # fmt: skip
    return [
        "## Summary",
        "",
        *_table(header, rows),
        "REST goes through Envoy, gRPC straight to the services. Ceiling: GET /ping, which Envoy answers "
        "itself (REST), and Health.Check on the timeline service (gRPC), same stack and clients, same run; "
        "the multiples compare each latency with the ceiling run's p50 or p99 on the same path (tweets and "
        "fan-out lag, which go through Envoy, with the REST p99). Of gRPC reads: REST reads/s over the "
        "gRPC reads/s of the same mode, on the same stack in the same run.",
        "",
    ]


def rest_of_grpc(mode: dict[str, Any]) -> float | None:
    """REST timeline reads/s over gRPC timeline reads/s, both measured on the same stack."""
    return ratio(
        _op(mode, "rest", "timeline_read").get("throughput"),
        _op(mode, "grpc", "timeline_read").get("throughput"),
    )


def cpu_table(results: dict[str, Any]) -> list[str]:
    """Per mode, CPU milliseconds per request by process, in the mixed runs through Envoy and
    straight to the services."""
    figures = per_core(results)
    columns = [("rest", part) for part in ("envoy", "stack", "redis", "postgres")]
    columns += [("grpc", part) for part in ("stack", "redis", "postgres")]
    rows = []
    for name, entry in figures.items():
        values = [entry.get(path, {}).get(f"{part}_cpu_ms_per_request") for path, part in columns]
        if any(value is not None for value in values):
            rows.append(
                [
                    name,
                    *(
                        num(value, 3 if part == "redis" else 2)
                        for (_, part), value in zip(columns, values, strict=True)
                    ),
                ]
            )
    if not rows:
        return []
    labels = dict(PATHS)
    header = ["mode", *(f"{labels[path]}: {PART_LABELS[part]}" for path, part in columns)]
    return [
        *_table(header, rows),
        "CPU milliseconds per request by process (user + system, sampled over each mixed run and divided "
        "by its requests, 95% of them timeline reads). Python workers: the services and the auth service "
        "Envoy asks for each REST request; over gRPC Envoy is not on the path.",
        "",
    ]


def _against(value: float | None, ceiling: float | None) -> str:
    return f"{num(value)} ({times(ratio(value, ceiling))})"


def _ceiling_op(results: dict[str, Any], path: str) -> dict[str, Any]:
    ops = results.get("ceiling", {}).get(path, {}).get("ops", {})
    # GET /ping since the gateway is Envoy; runs before that measured GET /healthz.
    names = ("ping", "healthz") if path == "rest" else ("health_check",)
    found: dict[str, Any] = next((ops[name] for name in names if name in ops), {})
    return found


def _reads(results: dict[str, Any], command: str) -> list[str]:
    rows = []
    for name, mode in results["modes"].items():
        for path, label in PATHS:
            op = _op(mode, path, "timeline_read")
            if op:
                share = ratio(op["throughput"], ceiling_throughput(results, path))
                rows.append(
                    [
                        name,
                        label,
                        *_nums(op, "throughput", "p50", "p90", "p99", "max"),
                        str(op["errors"]),
                        _pct(share),
                        _pct(rest_of_grpc(mode)) if path == "rest" else "-",
                    ]
                )
    header = [
        "mode", "path", "reads/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "of ceiling",
        "of gRPC reads",
    ]  # fmt: skip
    return ["## Timeline reads (mixed workload)", "", *_table(header, rows)]


def _writes(results: dict[str, Any], command: str) -> list[str]:
    rows = []
    for name, mode in results["modes"].items():
        for path, label in PATHS:
            tweet, follow = _op(mode, path, "tweet"), _op(mode, path, "follow")
            if tweet:
                errors = tweet["errors"] + follow.get("errors", 0)
                rows.append(
                    [
                        name,
                        label,
                        *_nums(tweet, "throughput", "p50", "p99"),
                        *_nums(follow, "p50", "p99"),
                        str(errors),
                    ]
                )
    header = [
        "mode",
        "path",
        "tweets/s",
        "tweet p50 ms",
        "tweet p99 ms",
        "follow p50 ms",
        "follow p99 ms",
        "errors",
    ]
    return ["## Writes (mixed workload)", "", *_table(header, rows)]


def _state(results: dict[str, Any], command: str) -> list[str]:
    config, modes = results["config"], results["modes"]
    rows = []
    for name, mode in modes.items():
        lag = mode.get("fanout_lag", {})
        ordinary, celebrity = lag.get("ordinary", {}), lag.get("celebrity", {})
        redis = mode.get("redis", {})
        rows.append(
            [
                name,
                *_nums(ordinary, "p50", "p99"),
                *_nums(celebrity, "p50", "p99"),
                str(ordinary.get("errors", 0) + celebrity.get("errors", 0)),
                *_nums(mode["cold_rebuild"], "p50", "p99"),
                num(mode["postgres"]["warm_read"]["p50"]),
                num(mode["postgres"]["statements_per_read"], 2),
                num(_mib(redis.get("after_first_reads", {}).get("used_memory"))),
                num(redis.get("warm_reader_bytes"), 0),
                num(mode.get("rest", {}).get("fanout_queue", {}).get("max")),
            ]
        )
    header = [
        "mode", "lag p50 ms (ordinary)", "lag p99 ms (ordinary)", "lag p50 ms (celebrity)",
        "lag p99 ms (celebrity)", "not seen", "first read p50 ms", "first read p99 ms", "warm read p50 ms",
        "PG statements / read", "Redis MiB after first reads", "bytes / warm reader", "max fan-out queue",
    ]  # fmt: skip
    poll = config["lag_poll_seconds"] * 1000
    return [
        "## Fan-out, first reads, PostgreSQL and Redis",
        "",
        *_table(header, rows),
        f"Lag: from CreateTweet answering until the tweet is on the first page of each of up to "
        f"{config['lag_followers']} warm followers, polled every {poll:.0f} ms during the REST run (the "
        "figure includes the read that saw it). First read: each active reader's first read after Redis "
        "was emptied (a cold rebuild in push and hybrid; with --url, the new accounts' first read). "
        "Warm read: one read at a time x 4, no other load. "
        f"PG statements / read: {_method(modes)}, less the idle background rate. Not seen: follower polls "
        f"that gave up after {config['lag_timeout_seconds']:.0f} s.",
        "",
    ]


def _nums(values: dict[str, Any], *keys: str) -> list[str]:
    return [num(values.get(key)) for key in keys]


def loads(values: Sequence[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values) if values else "-"


def _mib(value: float | None) -> float | None:
    return None if value is None else value / 2**20


def _processes(modes: dict[str, Any]) -> str:
    counts = sorted({int(mode.get("processes") or 0) for mode in modes.values()})
    if counts == [0]:
        return "a stack running elsewhere (--url)"
    return f"{', '.join(map(str, counts))} worker process(es) (`chirp up --processes`)"


def _method(modes: dict[str, Any]) -> str:
    methods = {mode["postgres"]["method"] for mode in modes.values()}
    return "; ".join(sorted(methods))


def _ratios(results: dict[str, Any], command: str) -> list[str]:
    modes: dict[str, Any] = results["modes"]
    if "pull" not in modes or len(modes) < 2:
        return []
    others = [name for name in modes if name != "pull"]
    metrics: list[tuple[str, Any, bool]] = [
        ("REST reads/s", lambda m: _op(m, "rest", "timeline_read").get("throughput"), True),
        ("REST read p50", lambda m: _op(m, "rest", "timeline_read").get("p50"), False),
        ("REST read p99", lambda m: _op(m, "rest", "timeline_read").get("p99"), False),
        ("gRPC reads/s", lambda m: _op(m, "grpc", "timeline_read").get("throughput"), True),
        ("REST reads / gRPC reads", rest_of_grpc, True),
        ("gRPC read p99", lambda m: _op(m, "grpc", "timeline_read").get("p99"), False),
        ("tweet p99 (REST)", lambda m: _op(m, "rest", "tweet").get("p99"), False),
        (
            "fan-out lag p99, ordinary",
            lambda m: m.get("fanout_lag", {}).get("ordinary", {}).get("p99"),
            False,
        ),
        (
            "fan-out lag p99, celebrity",
            lambda m: m.get("fanout_lag", {}).get("celebrity", {}).get("p99"),
            False,
        ),
        ("first read p99", lambda m: m["cold_rebuild"].get("p99"), False),
        ("PG statements / read", lambda m: m["postgres"].get("statements_per_read"), False),
    ]
    rows = []
    for label, get, higher_better in metrics:
        values = {name: get(mode) for name, mode in modes.items()}
        present = {
            name: value for name, value in values.items() if value is not None and not math.isnan(value)
        }
        best = _best(present, higher_better)
        rows.append(
            [
                label,
                *(num(values[name], 2) for name in modes),
                *(times(ratio(values[name], values["pull"])) for name in others),
                best,
            ]
        )
    header = ["figure", *modes, *(f"{name} / pull" for name in others), "best"]
    return ["## Side by side", "", *_table(header, rows)]


def _best(values: dict[str, float], higher_better: bool) -> str:
    """The mode with the best value; modes within 1% of it tie ("push = hybrid")."""
    if not values:
        return "-"
    top = (max if higher_better else min)(values.values())
    return " = ".join(name for name, value in values.items() if abs(value - top) <= 0.01 * abs(top) + 1e-9)


def _ceiling(results: dict[str, Any], command: str) -> list[str]:
    ceiling = results.get("ceiling")
    if not ceiling:
        return []
    rows = []
    calls = {
        "ping": "GET /ping (answered by Envoy itself)",
        "healthz": "GET /healthz (Envoy, with the upstreams' health)",
        "health_check": "grpc.health.v1 Health.Check on the timeline service",
    }
    for path, label in PATHS:
        run = ceiling.get(path, {})
        cpu = run.get("cpu_seconds", {})
        for name, op in run.get("ops", {}).items():
            requests = op["count"]
            rows.append(
                [
                    label,
                    calls.get(name, name),
                    num(op["throughput"]),
                    num(op["p50"]),
                    num(op["p99"]),
                    str(op["errors"]),
                    *(num(per(cpu.get(part), requests, 1000), 3) for part in ("envoy", "stack", "load")),
                ]
            )
    header = [
        "path", "call", "req/s", "p50 ms", "p99 ms", "errors", "Envoy CPU ms / req",
        "Python workers CPU ms / req", "load generator CPU ms / req",
    ]  # fmt: skip
    return [
        f"## Ceiling ({ceiling['processes']} worker process(es), same clients, same run)",
        "",
        *_table(header, rows),
    ]


# The stack's processes: every part the benchmark meters but its own load generator.
STACK_PARTS = tuple(part for part in CPU_PARTS if part != "load")


def _cores(run: dict[str, Any]) -> dict[str, float | None]:
    """CPU-seconds per second of the run, by metered part."""
    cpu, window = run.get("cpu_seconds", {}), run.get("window_seconds") or 0
    return {part: per(cpu.get(part), window) for part in CPU_PARTS}


def reads_per_stack_core(run: dict[str, Any]) -> float | None:
    """Reads/s over the cores the stack used in that run (Envoy, Python workers, PostgreSQL,
    Redis; not the load generator): how well the reads use what the stack burns, whatever the
    machine left it."""
    cores = _cores(run)
    used = sum(c for part in STACK_PARTS if (c := cores[part]) is not None)
    reads = run["ops"]["timeline_read"]["throughput"]
    return reads / used if used and reads is not None else None


def speedup_line(results: dict[str, Any]) -> list[str]:
    speed = results.get("speedup")
    if not speed:
        return []
    few, many = speed["processes"][0], speed["processes"][-1]
    line = f"Speed-up from {few} to {many} processes: {times(speed['speedup'])}."
    one = reads_per_stack_core(speed["runs"][str(few)])
    scaled = reads_per_stack_core(speed["runs"][str(many)])
    if one and scaled:
        line += (
            f" Reads/s per stack core (Envoy, Python workers, PostgreSQL, Redis): {num(one)} with {few}, "
            f"{num(scaled)} with {many} ({_pct(scaled / one)} of {few}'s)."
        )
    return [line, ""]


def _speedup(results: dict[str, Any], command: str) -> list[str]:
    speed = results.get("speedup")
    if not speed:
        return []
    rows = []
    for count in speed["processes"]:
        run = speed["runs"][str(count)]
        op = run["ops"]["timeline_read"]
        cores = _cores(run)
        rows.append(
            [
                str(count),
                *_nums(op, "throughput", "p50", "p99"),
                str(op["errors"]),
                *(num(cores[part], 2) for part in ("envoy", "stack", "postgres", "redis", "load")),
                num(reads_per_stack_core(run)),
            ]
        )
    header = [
        "processes", "reads/s", "p50 ms", "p99 ms", "errors", "Envoy cores", "Python workers cores",
        "PostgreSQL cores",
    ]  # fmt: skip
    return [
        f"## Processes: timeline reads only, through Envoy ({speed['mode']})",
        "",
        *_table([*header, "Redis cores", "load generator cores", "reads/s per stack core"], rows),
        f"{speedup_line(results)[0]} Each count ran twice on a freshly started stack (order 1, N, N, 1); "
        "the better run is shown; Envoy runs once in front of the workers either way. Cores: CPU-seconds "
        "used per second of the run, by part; the workers can only use what Envoy, PostgreSQL, Redis, the "
        "load generator and anything else on the machine leave.",
        "",
    ]


def _capacity(results: dict[str, Any], command: str) -> list[str]:
    return capacity_inputs(results)


def capacity_inputs(results: dict[str, Any]) -> list[str]:
    """The measured inputs of docs/capacity.md."""
    figures = per_core(results)
    rows = []
    for name, entry in figures.items():
        for path, label in PATHS:
            run = entry.get(path)
            if run:
                rows.append(
                    [
                        name,
                        label,
                        num(run["requests_per_second"]),
                        num(run.get("envoy_cpu_ms_per_request"), 3),
                        num(run["stack_cpu_ms_per_request"], 2),
                        num(run["postgres_cpu_ms_per_request"], 2),
                        num(run["redis_cpu_ms_per_request"], 3),
                        num(run["load_cpu_ms_per_request"], 2),
                        num(run["requests_per_stack_cpu_second"]),
                    ]
                )
    lines = [
        "## Capacity inputs (CPU per request, from the mixed runs)",
        "",
        *_table(
            [
                "mode",
                "path",
                "req/s",
                "Envoy CPU ms / req",
                "Python workers CPU ms / req",
                "PostgreSQL CPU ms / req",
                "Redis CPU ms / req",
                "load generator CPU ms / req",
                "req per Python worker CPU-second",
            ],
            rows,
        ),
    ]
    rows = []
    for name, entry in figures.items():
        writes = entry.get("writes")
        if writes:
            rows.append(
                [
                    name,
                    num(writes["tweets_per_second"]),
                    num(writes["stack_cpu_ms_per_tweet"], 2),
                    num(writes["postgres_cpu_ms_per_tweet"], 2),
                    num(writes["redis_cpu_ms_per_tweet"], 3),
                    num(writes["timelines_written_per_tweet"], 1),
                ]
            )
    lines += [
        "Tweets only, straight to the tweets service (CPU includes the fan-out work done within 3 s "
        "after the burst):",
        "",
        *_table(
            [
                "mode",
                "tweets/s",
                "Python workers CPU ms / tweet",
                "PostgreSQL CPU ms / tweet",
                "Redis CPU ms / tweet",
                "timelines written / tweet",
            ],
            rows,
        ),
    ]
    rows = []
    for name, mode in results["modes"].items():
        redis = mode.get("redis", {})
        rows.append(
            [
                name,
                num(redis.get("timeline_bytes"), 0),
                num(redis.get("timeline_entries"), 0),
                num(redis.get("warm_reader_bytes"), 0),
                num(redis.get("tweet_cache_entry_bytes"), 0),
                num(redis.get("growth_per_reader_bytes"), 0),
            ]
        )
    lines += [
        "Redis (MEMORY USAGE of sampled keys after the first reads; growth = used_memory growth over "
        "the first reads / readers, the tweet cache included):",
        "",
        *_table(
            [
                "mode",
                "bytes / home timeline",
                "entries / home timeline",
                "bytes / warm reader (all own keys)",
                "bytes / cached tweet",
                "growth bytes / reader",
            ],
            rows,
        ),
    ]
    return lines


def write(results: dict[str, Any], out: Path, command: str) -> str:
    """Write results.json and results.md into `out`; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    results["command"] = command
    results["per_core"] = per_core(results)
    results["capacity"] = capacity.model(results)
    (out / "results.json").write_text(json.dumps(_clean(results), indent=2) + "\n")
    text = markdown(results, command)
    (out / "results.md").write_text(text + "\n")
    return text


def _clean(value: Any) -> Any:
    """JSON-ready: NaN becomes null, paths become strings."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value
