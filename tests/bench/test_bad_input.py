"""`chirp bench` and `python -m bench.publish` refuse bad input with exit code 2 and a message
naming the flag or file, before starting anything or writing anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import bench
from bench import publish

ROOT = Path(__file__).resolve().parents[2]


def exit_code(argv: list[str]) -> int:
    """What `chirp bench ARGV` exits with (argparse itself exits on a value it cannot parse)."""
    try:
        return bench.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--modes", "fanout"], "--modes"),
        (["--users", "5"], "--users"),
        (["--mix", "1,2"], "--mix"),
        (["--processes", "0"], "--processes"),
        (["--url", "http://127.0.0.1:1"], "--database-url"),
        (["--targets", "nonsense"], "--targets"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert exit_code([*argv, "--out", str(tmp_path / "out")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_publish_outside_the_repository_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--publish", "--out", str(tmp_path / "out")]) == 2
    assert "--publish" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_publishing_a_missing_run_is_refused_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copyfile(ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    assert publish.main([str(tmp_path / "no-such-run")]) == 2
    assert "results.json" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["README.md"]
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text()
