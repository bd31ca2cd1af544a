"""The benchmark has its own entry point, `python -m bench` (installed as `chirp-bench`); `chirp
bench` reaches it through the `chirp.commands` entry point, without chirp_app importing bench.
Each refuses a bad flag the same way: exit code 2, the flag named, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "chirp_app.cli", "bench"],
        [sys.executable, "-m", "bench"],
        [str(SCRIPTS / "chirp-bench")],
        [str(SCRIPTS / "chirp"), "bench"],
    ],
    ids=["python -m chirp_app.cli bench", "python -m bench", "chirp-bench", "chirp bench"],
)
def test_every_entry_point_runs_the_benchmark(command: list[str], tmp_path: Path) -> None:
    run = subprocess.run(
        [*command, "--modes", "fanout", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--modes" in run.stderr
    assert not (tmp_path / "out").exists()


def test_chirp_help_lists_the_bench_command(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "chirp_app.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "{up,serve,envoy-config,bench}" in run.stdout
