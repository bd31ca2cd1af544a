"""bench.request_redis runs end to end on its own server and prints a figure for each client."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_request_client_benchmark_prints_reads_and_cpu_for_both_clients() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.request_redis", "--seconds", "0.4", "--round-seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    line = re.compile(
        r"^(?P<label>pooled \(redis-py\)|multiplexed)\s+(?P<rate>[\d,]+) reads/s .* "
        r"CPU\s+(?P<cpu>[\d.]+) us/read  errors (?P<errors>\d+)$",
        re.MULTILINE,
    )
    found = {
        m["label"]: (float(m["rate"].replace(",", "")), float(m["cpu"]), int(m["errors"]))
        for m in line.finditer(done.stdout)
    }
    assert set(found) == {"pooled (redis-py)", "multiplexed"}, done.stdout
    for rate, cpu, errors in found.values():
        assert rate > 0 and cpu > 0 and errors == 0  # every read came back warm, full and hydrated
    assert re.search(r"multiplexed / pooled: throughput [\d.]+x, CPU per read [\d.]+x", done.stdout)
