"""What each request and each tweet costs in CPU, per component, from a run's measured CPU
seconds: the figures both the report and the capacity model are built on."""

from __future__ import annotations

from typing import Any

PATHS = (("rest", "REST"), ("grpc", "gRPC"))
# Groups of processes whose CPU each phase measures (bench.cpu): "stack" is the Python worker
# processes (the services and the auth service), "load" the load generator.
CPU_PARTS = ("envoy", "stack", "redis", "postgres", "load")


def per_core(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per mode: CPU milliseconds per request of each component (Envoy, the Python worker
    processes, Redis, PostgreSQL, the load generator), and requests per CPU-second of the Python
    workers, over the mixed runs and the tweets-only burst. All the mixed runs' CPU is charged to
    their requests (95% of them reads)."""
    figures: dict[str, dict[str, Any]] = {}
    for name, mode in results.get("modes", {}).items():
        entry: dict[str, Any] = {}
        for path, _ in PATHS:
            run = mode.get(path)
            if not run:
                continue
            requests = sum(op["count"] for op in run["ops"].values())
            window = run["window_seconds"]
            cpu = run.get("cpu_seconds", {})
            entry[path] = {
                "requests": requests,
                "requests_per_second": requests / window if window else None,
                **{f"{part}_cpu_ms_per_request": per(cpu.get(part), requests, 1000) for part in CPU_PARTS},
                "requests_per_stack_cpu_second": per(requests, cpu.get("stack")),
            }
        writes = mode.get("writes")
        if writes:
            tweets = writes["ops"].get("tweet", {}).get("count", 0)
            cpu = {
                part: writes["cpu_seconds"].get(part, 0) + writes.get("tail_cpu_seconds", {}).get(part, 0)
                for part in ("stack", "postgres", "redis")
            }
            entry["writes"] = {
                "tweets": tweets,
                "tweets_per_second": writes["ops"].get("tweet", {}).get("throughput"),
                **{f"{part}_cpu_ms_per_tweet": per(cpu[part], tweets, 1000) for part in cpu},
                "timelines_written_per_tweet": per(writes.get("timelines_written"), tweets),
            }
        figures[name] = entry
    return figures


def per(amount: float | None, count: float | None, scale: float = 1.0) -> float | None:
    if amount is None or not count:
        return None
    return amount * scale / count
