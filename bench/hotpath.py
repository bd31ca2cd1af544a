"""The hot-path figures of a run, for the microblog phase and for the mixed workload alike: reads/s
through Envoy and over gRPC next to the Health.Check ceiling, latency, CPU milliseconds per read
by process (Envoy, each Python worker, Redis, PostgreSQL), Redis bytes per warm timeline, and the
follow and tweet rates of the microblog phase's seeding."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.costs import per
from bench.stats import ratio

READ = "timeline_read"
_WORKER = re.compile(r"worker(\d+)$")


@dataclass(frozen=True)
class HotPath:
    """One line of the table: a read workload on both paths and the ceiling beside it."""

    label: str
    clients: int
    rest: dict[str, Any]
    grpc: dict[str, Any]
    ceiling: dict[str, Any]
    rest_tool: str

    def op(self, path: str) -> dict[str, Any]:
        found: dict[str, Any] = getattr(self, path).get("ops", {}).get(READ, {})
        return found

    def ceiling_op(self) -> dict[str, Any]:
        found: dict[str, Any] = self.ceiling.get("ops", {}).get("health_check", {})
        return found


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def hot_paths(results: dict[str, Any]) -> list[HotPath]:
    """The microblog phase's runs, then each mode's mixed runs with the run's ceiling."""
    found: list[HotPath] = []
    microblog = results.get("microblog")
    if microblog:
        for run in microblog.get("runs", []):
            found.append(
                HotPath(
                    label=f"microblog, {microblog.get('mode', '')}",
                    clients=run["clients"],
                    rest=run["rest"],
                    grpc=run["grpc"],
                    ceiling=run["ceiling"],
                    rest_tool=run["rest"].get("tool", "python"),
                )
            )
    config = results.get("config", {})
    clients = int(config.get("load_processes", 0)) * int(config.get("concurrency", 0))
    ceiling = results.get("ceiling", {}).get("grpc", {})
    for name, mode in results.get("modes", {}).items():
        if mode.get("rest") or mode.get("grpc"):
            found.append(
                HotPath(
                    label=f"{name}, mixed workload",
                    clients=clients,
                    rest=mode.get("rest", {}),
                    grpc=mode.get("grpc", {}),
                    ceiling=ceiling,
                    rest_tool="python",
                )
            )
    return found


def throughput_rows(paths: Sequence[HotPath]) -> list[list[str]]:
    rows = []
    for path in paths:
        rest, grpc, ceiling = path.op("rest"), path.op("grpc"), path.ceiling_op()
        top = ceiling.get("throughput")
        rows.append(
            [
                path.label,
                str(path.clients),
                f"{_num(rest.get('throughput'))} ({path.rest_tool})",
                _num(grpc.get("throughput")),
                _num(top),
                _pct(ratio(rest.get("throughput"), top)),
                _pct(ratio(grpc.get("throughput"), top)),
                _pct(ratio(rest.get("throughput"), grpc.get("throughput"))),
                f"{_num(rest.get('p50'), 2)} / {_num(rest.get('p99'), 2)}",
                f"{_num(grpc.get('p50'), 2)} / {_num(grpc.get('p99'), 2)}",
                f"{_num(ceiling.get('p50'), 2)} / {_num(ceiling.get('p99'), 2)}",
                f"{rest.get('errors', 0)} / {grpc.get('errors', 0)}",
            ]
        )
    return rows


THROUGHPUT_HEADER = [
    "workload", "clients", "REST reads/s (driver)", "gRPC reads/s", "Health.Check/s",
    "REST of ceiling", "gRPC of ceiling", "REST / gRPC", "REST p50 / p99 ms", "gRPC p50 / p99 ms",
    "Health.Check p50 / p99 ms", "errors REST / gRPC",
]  # fmt: skip


def workers(paths: Sequence[HotPath]) -> list[str]:
    """The per-worker CPU groups the runs measured, in worker order."""
    names = {
        name
        for path in paths
        for run in (path.rest, path.grpc)
        for name in run.get("cpu_seconds", {})
        if _WORKER.match(name)
    }
    return sorted(names, key=lambda name: int(_WORKER.match(name).group(1)))  # type: ignore[union-attr]


def cpu_rows(paths: Sequence[HotPath]) -> tuple[list[str], list[list[str]]]:
    """CPU ms per request by process: each run's CPU seconds over its requests (reads only in the
    microblog phase; 95% reads in the mixed workload, whose writes are charged to it too)."""
    parts = ["envoy", "stack", *workers(paths), "redis", "postgres", "load"]
    labels = {
        "envoy": "Envoy",
        "stack": "Python workers",
        "redis": "Redis",
        "postgres": "PostgreSQL",
        "load": "load generator",
    }
    header = ["workload", "clients", "path", *(labels.get(part, part) for part in parts), "all but load"]
    rows = []
    for path in paths:
        for name in ("rest", "grpc"):
            run = getattr(path, name)
            if not run.get("ops"):
                continue
            requests = sum(op.get("count", 0) for op in run["ops"].values())
            cpu = run.get("cpu_seconds", {})
            values = [per(cpu.get(part), requests, 1000) for part in parts]
            served = sum(cpu.get(part, 0.0) for part in ("envoy", "stack", "redis", "postgres"))
            rows.append(
                [
                    path.label,
                    str(path.clients),
                    "REST" if name == "rest" else "gRPC",
                    *(_num(value, 3) for value in values),
                    _num(per(served, requests, 1000), 3),
                ]
            )
    return header, rows


def seeding_rows(microblog: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, label in (("follows", "Follow"), ("tweets", "CreateTweet")):
        done = microblog.get("seeding", {}).get(kind)
        if not done:
            continue
        cpu = done.get("cpu_seconds", {})
        latency = done.get("latency", {})
        rows.append(
            [
                label,
                _num(done["ok"]),
                str(done["concurrency"]),
                _num(done["per_second"]),
                f"{_num(latency.get('p50'), 2)} / {_num(latency.get('p99'), 2)}",
                str(done["errors"]),
                *(
                    _num(per(cpu.get(part), done["ok"], 1000), 3)
                    for part in ("stack", "postgres", "redis", "load")
                ),
            ]
        )
    return rows


SEEDING_HEADER = [
    "call (gRPC)", "calls", "in flight", "calls/s", "p50 / p99 ms", "errors",
    "Python workers CPU ms / call", "PostgreSQL CPU ms / call", "Redis CPU ms / call",
    "bench process CPU ms / call",
]  # fmt: skip


def redis_rows(results: dict[str, Any]) -> list[list[str]]:
    found = []
    microblog = results.get("microblog")
    if microblog and microblog.get("redis"):
        found.append(("microblog", microblog["redis"]))
    for name, mode in results.get("modes", {}).items():
        warm = mode.get("redis", {}).get("warm_timeline")
        if warm:
            found.append((f"{name}, mixed workload", warm))
    return [
        [
            label,
            f"{warm['warm']} of {warm['readers']}",
            _num(warm["bytes"], 0),
            _num(warm["timeline_bytes"], 0),
            _num(warm["timeline_entries"], 1),
            _num(warm["following_bytes"], 0),
            _num(warm["following_entries"], 1),
            ", ".join(f"`{key}`" for key in warm.get("keys_of_first_reader", [])),
        ]
        for label, warm in found
    ]


REDIS_HEADER = [
    "workload", "warm readers", "bytes / warm timeline", "timeline key(s) bytes", "timeline entries",
    "follow set bytes", "follow set entries", "keys of one reader",
]  # fmt: skip


def markdown(results: dict[str, Any], command: str) -> list[str]:
    paths = hot_paths(results)
    if not paths:
        return []
    lines = [
        "## Hot path: warm home-timeline reads",
        "",
        *_table(THROUGHPUT_HEADER, throughput_rows(paths)),
        "REST: GET /timeline?user_id=..&limit=20 through Envoy, each account's bearer token in turn (wrk: "
        "one thread, one connection per client; its percentiles include any error answers). gRPC: "
        "GetHomeTimeline straight to the timeline service (the Python driver). Ceiling: gRPC "
        "Health.Check with the same clients on the same stack in the same run (the mixed workload's "
        "with the mixed run's clients).",
        "",
    ]
    header, rows = cpu_rows(paths)
    lines += [
        "CPU milliseconds per request by process (user + system over each run):",
        "",
        *_table(header, rows),
    ]
    microblog = results.get("microblog")
    if microblog:
        seeding = seeding_rows(microblog)
        if seeding:
            lines += [
                "Seeding the microblog graph over gRPC (CPU over each seeding stretch, per call; the "
                "fan-out workers' share of the events included):",
                "",
                *_table(SEEDING_HEADER, seeding),
            ]
    redis = redis_rows(results)
    if redis:
        lines += [
            "Redis per warm reader: MEMORY USAGE (SAMPLES 0) of the keys TimelineStore.timeline_key and "
            "following_key name, after the first reads:",
            "",
            *_table(REDIS_HEADER, redis),
        ]
    return lines


def header(results: dict[str, Any]) -> list[str]:
    """The microblog phase's graph, for a run of that phase alone."""
    microblog = results.get("microblog")
    if not microblog:
        return []
    graph, config = microblog["graph"], results["config"]
    return [
        f"Microblog graph: {graph['users']:,} users, {config['microblog_follows']} random follows and "
        f"{config['microblog_tweets']} tweets each ({graph['follows']:,} follows, {graph['tweets']:,} "
        f"tweets; {graph['grpc_follows']:,} follows and {graph['grpc_tweets']:,} tweets seeded over "
        f"gRPC, the rest loaded with COPY); {microblog['processes']} worker process(es), "
        f"{microblog.get('mode', '')} mode; {config['microblog_seconds']:.0f} s per read run.",
        "",
        *_first_reads(microblog.get("first_reads")),
    ]


def _first_reads(first: dict[str, Any] | None) -> list[str]:
    if not first:
        return []
    warmed = "every timeline" if not first.get("not_warm") else f"all but {first['not_warm']} timeline(s)"
    passes = int(first.get("passes", 1))
    return [
        f"Before the measured reads, one read per account through Envoy: first reads p50 "
        f"{_num(first.get('p50'))} ms, p99 {_num(first.get('p99'))} ms; {passes} "
        f"pass{'' if passes == 1 else 'es'} warmed {warmed} (a pass reads again the timelines still "
        "cold in Redis).",
        "",
    ]
