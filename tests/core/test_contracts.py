"""The generated stubs match protos/, and the contracts pass buf lint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/protos.py", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_committed_stubs_are_fresh() -> None:
    result = run("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_is_clean() -> None:
    result = run("lint")
    assert result.returncode == 0, result.stdout + result.stderr
