"""bench.cluster_reads runs end to end on its own servers and prints a figure for each layout."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_cluster_benchmark_prints_reads_for_both_layouts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cluster_reads", "--seconds", "0.5", "--clients", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    line = re.compile(
        r"^(?P<label>one Redis|3-master Redis Cluster)\s+(?P<rate>[\d,]+) reads/s .* errors (?P<errors>\d+)$",
        re.MULTILINE,
    )
    lines = {
        match["label"]: (float(match["rate"].replace(",", "")), int(match["errors"]))
        for match in line.finditer(done.stdout)
    }
    assert set(lines) == {"one Redis", "3-master Redis Cluster"}, done.stdout
    for rate, errors in lines.values():
        assert rate > 0 and errors == 0  # every read came back warm, full and hydrated
    assert re.search(r"cluster / one Redis: throughput [\d.]+x", done.stdout)
