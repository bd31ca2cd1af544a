"""Latency summaries: percentiles by linear interpolation between the closest ranks (the
definition numpy and most load tools use by default), throughput over a measured window."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of ascending values; NaN for none."""
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True)
class Summary:
    """One operation over one window. Latencies in milliseconds; errors are not in them."""

    count: int
    errors: int
    seconds: float
    throughput: float
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, Any]:
        return {
            key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in asdict(self).items()
        }


def summarize(latencies_s: Iterable[float], *, errors: int = 0, seconds: float = 0.0) -> Summary:
    """Summarise latencies given in seconds; throughput is successful operations per second."""
    values = sorted(value * 1000 for value in latencies_s)
    count = len(values)
    p50, p90, p99 = (percentile(values, p) for p in PERCENTILES)
    return Summary(
        count=count,
        errors=errors,
        seconds=seconds,
        throughput=count / seconds if seconds > 0 else math.nan,
        p50=p50,
        p90=p90,
        p99=p99,
        max=values[-1] if values else math.nan,
        mean=sum(values) / count if count else math.nan,
    )


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when either is missing, NaN or whole is 0."""
    if part is None or whole is None or math.isnan(part) or math.isnan(whole) or whole == 0:
        return None
    return part / whole
