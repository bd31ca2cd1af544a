"""`chirp bench --publish`: a run's figures into the repository's pages, never by hand.

Copies results.json, results.md and the plots into docs/bench/, fills docs/capacity.md from
bench/templates/capacity.md, and replaces the README's benchmark table (between two markers). The
pages are functions of docs/bench/results.json, so tests/bench/test_published.py can check that
what the pages say is what the run printed."""

from __future__ import annotations

import copy
import json
import math
import shutil
import string
from pathlib import Path
from typing import Any

from bench import capacity, report
from bench.plots import FILES as PLOT_FILES
from chirp_core.settings import Settings

TEMPLATE = Path(__file__).parent / "templates" / "capacity.md"
README_START = "<!-- chirp bench: start -->"
README_END = "<!-- chirp bench: end -->"
# What a run holds besides its microblog phase.
MODE_PARTS = ("modes", "dataset", "ceiling", "speedup", "per_core", "capacity")


def check_root(root: Path) -> None:
    """Raise ValueError unless `root` is a checkout whose README has the benchmark markers."""
    readme = root / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if README_START not in text or README_END not in text:
        raise ValueError(
            f"--publish: run it from Chirp's repository root ({readme} has no "
            f"{README_START} ... {README_END} section)"
        )


def publish(out: Path, root: Path) -> list[Path]:
    """Publish the run in `out` into the repository at `root`; returns the files written."""
    check_root(root)
    if not (out / "results.json").is_file():
        raise ValueError(f"no results.json in {out}/ (run chirp bench first)")
    results = json.loads((out / "results.json").read_text())
    docs = root / "docs" / "bench"
    docs.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("results.json", *PLOT_FILES):
        if (out / name).exists():
            shutil.copyfile(out / name, docs / name)
            written.append(docs / name)
    # Rendered again rather than copied: the same text, unless the report's layout changed since.
    (docs / "results.md").write_text(report.markdown(copy.deepcopy(results), results["command"]) + "\n")
    written.append(docs / "results.md")
    (root / "docs" / "capacity.md").write_text(capacity_page(results))
    readme = root / "README.md"
    readme.write_text(with_readme_table(readme.read_text(), results))
    return [*written, root / "docs" / "capacity.md", readme]


def publish_microblog(out: Path, root: Path) -> list[Path]:
    """Publish the microblog phase of the run in `out` as docs/bench/microblog.json (the run
    without its timeline modes) and microblog.md (the report rendered from that JSON); the main
    run's pages are left as they are."""
    check_root(root)
    if not (out / "results.json").is_file():
        raise ValueError(f"no results.json in {out}/ (run chirp bench first)")
    results = json.loads((out / "results.json").read_text())
    if "microblog" not in results:
        raise ValueError(f"{out}/results.json has no microblog phase")
    own = {key: value for key, value in results.items() if key not in MODE_PARTS}
    docs = root / "docs" / "bench"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "microblog.json").write_text(json.dumps(own, indent=2) + "\n")
    (docs / "microblog.md").write_text(report.markdown(copy.deepcopy(own), own["command"]) + "\n")
    return [docs / "microblog.json", docs / "microblog.md"]


def readme_table(results: dict[str, Any]) -> str:
    """The README's lines between the markers: the run's header, summary, CPU per request and
    speed-up."""
    command = results["command"]
    lines = [
        *report.header_line(results, command),
        *report.summary_table(results)[2:],  # without its heading
        *report.cpu_table(results),
        *report.speedup_line(results),
        "![timeline read latency by mode](docs/bench/latency_by_mode.png)",
        "![timeline read throughput by mode](docs/bench/throughput_by_mode.png)",
        "![fan-out lag by mode](docs/bench/fanout_lag.png)",
    ]
    return "\n".join(lines)


def with_readme_table(readme: str, results: dict[str, Any]) -> str:
    start, end = readme.index(README_START), readme.index(README_END)
    return readme[: start + len(README_START)] + "\n" + readme_table(results) + "\n" + readme[end:]


def capacity_page(results: dict[str, Any]) -> str:
    return string.Template(TEMPLATE.read_text()).substitute(capacity_figures(results))


def capacity_figures(results: dict[str, Any]) -> dict[str, str]:
    """Every figure the capacity page names, formatted as results.md prints it."""
    found = results["capacity"]
    if not found:
        raise ValueError("the run has no capacity model (it needs a mode's REST, gRPC and tweet runs)")
    i = found["inputs"]
    lines = {line["name"]: line for line in found["lines"]}
    modes, machine, data, config = results["modes"], results["machine"], results["dataset"], results["config"]
    design = modes[i["mode"]]
    defaults = Settings()
    per_write_ms = capacity.redis_ms_per_timeline_write(i)
    mix = config["mix"]
    speed = results.get("speedup") or {}

    def model_line(prefix: str, case: str = "high") -> str:
        name = next(name for name in lines if name.startswith(prefix))
        return capacity.fmt(lines[name][case])

    def p99(value: dict[str, Any] | None) -> str:
        return report.num((value or {}).get("p99"))

    def mode_figure(name: str, pick: Any) -> str:
        if name not in modes:
            return "-"
        value = pick(modes[name])
        return value if isinstance(value, str) else report.num(value)

    tiers = {
        "gateway": lines["gateway instances"]["high"],
        "timeline": lines["timeline instances"]["high"],
        "tweets": lines["tweets instances"]["high"],
    }
    largest = max(tiers, key=lambda tier: tiers[tier])
    shard_cpu = lines["Redis cores"]["high"] / capacity.REDIS_SHARD_CORES
    shard_gib = capacity.REDIS_SHARD_BYTES / 2**30
    shard_memory = lines["Redis memory for warm timelines (GiB)"]["high"] / shard_gib
    one, many = _speedup_runs(speed)
    return {
        "command": results["command"],
        "started_at": results.get("started_at", ""),
        "cores": str(machine["cpu_count"]),
        "load_start": report.loads(machine["load_average"]),
        "load_end": report.loads(machine.get("load_average_end", [])),
        "processes": str(max(speed.get("processes", [config["processes"]]))),
        "seed": str(config["seed"]),
        "users": f"{data['users']:,}",
        "followees_median": report.num(data["followees_median"], 0),
        "celebrities": str(data["celebrities"]),
        "threshold": f"{data['celebrity_threshold']:,}",
        "tweets": f"{data['tweets']:,}",
        "mix": (
            f"{mix['read']:.0%} home-timeline reads / {mix['tweet']:.0%} tweets / {mix['follow']:.0%} follows"
        ),
        "active_users": f"{config['active_users']:,}",
        "inputs": "\n".join(report.capacity_inputs(results)[2:]).rstrip(),
        "model": "\n".join(capacity.markdown(results, results["command"])[2:]).rstrip(),
        "largest_tier": (
            f"The {largest} tier is the largest ({_tier_counts(tiers)} instances at the high case)."
        ),
        "bottleneck_high": capacity.first_bottleneck(lines, "high"),
        "bottleneck_x10": capacity.first_bottleneck(lines, "x10"),
        "rest_envoy_ms": f"{i['rest_envoy_ms']:.2f}",
        "rest_stack_ms": f"{i['rest_stack_ms']:.2f}",
        "auth_ms": f"{max(0.0, i['rest_stack_ms'] - i['grpc_stack_ms']):.2f}",
        "grpc_stack_ms": f"{i['grpc_stack_ms']:.2f}",
        "warm_statements": report.num(design["postgres"]["statements_per_read"], 2),
        "shards_by": (
            f"{'Memory, not CPU' if shard_memory >= shard_cpu else 'CPU, not memory'}, sets the number of "
            f"Redis Cluster masters at the high case ({math.ceil(shard_memory)} for the memory against "
            f"{math.ceil(shard_cpu)} for the CPU)."
        ),
        "warm_reader_bytes": f"{i['warm_reader_bytes']:,.0f}",
        "timeline_entries": f"{i['timeline_entries']:.0f}",
        "cached_tweet_bytes": report.num(design["redis"].get("tweet_cache_entry_bytes"), 0),
        "timeline_cap": str(defaults.timeline_size),
        "entry_bytes": f"{i['timeline_bytes'] / i['timeline_entries']:.0f}" if i["timeline_entries"] else "-",
        "per_write_ms": f"{per_write_ms:.4f}",
        "batch_size": f"{defaults.fanout_batch_size:,}",
        "big_audience": f"{capacity.BIG_AUDIENCE:,}",
        "big_cost": f"{capacity.BIG_AUDIENCE * per_write_ms / 1000:,.0f}",
        "celebrity_lag_push": mode_figure("push", _celebrity_lag),
        "celebrity_lag_hybrid": mode_figure("hybrid", _celebrity_lag),
        "queue_max": report.num(design.get("rest", {}).get("fanout_queue", {}).get("max")),
        "fanout_writes_high": model_line("fan-out writes"),
        "pull_statements": mode_figure("pull", lambda m: f"{m['postgres']['statements_per_read']:.2f}"),
        "cold_pg_ms": f"{i['cold_pg_ms']:.2f}",
        "pg_down_cores_high": model_line("PostgreSQL cores with Redis down"),
        "reads_high": model_line("peak timeline reads"),
        "pg_read_cores_high": model_line("PostgreSQL read cores"),
        "first_read_hybrid": p99(modes.get("hybrid", {}).get("cold_rebuild")),
        "first_read_pull": p99(modes.get("pull", {}).get("cold_rebuild")),
        "one_process_cores": f"{one:.2f}" if one is not None else "-",
        "speedup": report.times(speed.get("speedup")),
        "speedup_cores": many,
    }


def _celebrity_lag(mode: dict[str, Any]) -> Any:
    return mode["fanout_lag"].get("celebrity", {}).get("p99")


def _tier_counts(tiers: dict[str, float]) -> str:
    return ", ".join(f"{name} {count:.0f}" for name, count in tiers.items())


def _speedup_runs(speed: dict[str, Any]) -> tuple[float | None, str]:
    """The stack's cores in the one-process run, and the cores each part used in the last run."""
    if not speed:
        return None, "no speed-up run"
    counts = speed["processes"]
    cores = {}
    for count in (counts[0], counts[-1]):
        run = speed["runs"][str(count)]
        window = run.get("window_seconds") or 0
        cores[count] = {part: value / window if window else 0.0 for part, value in run["cpu_seconds"].items()}
    last = cores[counts[-1]]
    text = (
        f"with {counts[-1]} processes the workers used {last.get('stack', 0):.2f} cores, Envoy "
        f"{last.get('envoy', 0):.2f}, PostgreSQL {last.get('postgres', 0):.2f}, Redis "
        f"{last.get('redis', 0):.2f}, the load generator {last.get('load', 0):.2f}"
    )
    return cores[counts[0]].get("stack"), text


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.publish [OUT]`: publish an earlier run (default bench-results/) again,
    e.g. after an edit of the template."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        written = publish(Path(args[0] if args else "bench-results"), Path.cwd())
    except ValueError as exc:
        print(f"chirp bench: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
