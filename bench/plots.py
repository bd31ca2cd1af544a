"""PNG plots of a run: timeline read latency percentiles by mode, throughput by mode against the
ceiling, and the fan-out lag distribution (empirical CDF) by mode and author kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.costs import PATHS
from bench.report import ceiling_throughput

FILES = ("latency_by_mode.png", "throughput_by_mode.png", "fanout_lag.png")


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes: dict[str, Any] = results["modes"]
    names = list(modes)
    written: list[Path] = []

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, (path, label) in zip(axes, PATHS, strict=True):
        for offset, percentile in enumerate(("p50", "p90", "p99")):
            values = [
                modes[name].get(path, {}).get("ops", {}).get("timeline_read", {}).get(percentile) or 0
                for name in names
            ]
            positions = [index + (offset - 1) * 0.27 for index in range(len(names))]
            axis.bar(positions, values, width=0.27, label=percentile)
        axis.set_xticks(range(len(names)), names)
        axis.set_title(f"timeline read latency, {label}")
        axis.set_ylabel("ms")
        axis.legend()
    figure.tight_layout()
    written.append(_save(figure, out / FILES[0]))

    figure, axis = plt.subplots(figsize=(8, 4))
    for offset, (path, label) in enumerate(PATHS):
        values = [
            modes[name].get(path, {}).get("ops", {}).get("timeline_read", {}).get("throughput") or 0
            for name in names
        ]
        positions = [index + (offset - 0.5) * 0.4 for index in range(len(names))]
        bars = axis.bar(positions, values, width=0.4, label=f"reads/s via {label}")
        ceiling = ceiling_throughput(results, path)
        if ceiling:
            axis.axhline(
                ceiling,
                linestyle="--",
                linewidth=1,
                color=bars.patches[0].get_facecolor(),
                label=f"ceiling via {label}",
            )
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("requests / s")
    axis.set_title("timeline read throughput by mode (mixed workload)")
    axis.legend(fontsize="small")
    figure.tight_layout()
    written.append(_save(figure, out / FILES[1]))

    figure, axis = plt.subplots(figsize=(8, 4))
    colors = [f"C{index}" for index in range(len(names))]
    for name, color in zip(names, colors, strict=True):
        for kind, style in (("ordinary", "-"), ("celebrity", "--")):
            samples = sorted(modes[name].get("fanout_lag", {}).get(kind, {}).get("samples_ms", []))
            if samples:
                shares = [(index + 1) / len(samples) for index in range(len(samples))]
                axis.step(samples, shares, style, color=color, where="post", label=f"{name}, {kind}")
    axis.set_xscale("log")
    axis.set_xlabel("ms from CreateTweet answering to visible in a follower's timeline")
    axis.set_ylabel("share of follower polls")
    axis.set_title("fan-out lag")
    axis.legend(fontsize="small")
    figure.tight_layout()
    written.append(_save(figure, out / FILES[2]))
    return written


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
