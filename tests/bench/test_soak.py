"""`chirp bench --soak`: the machinery on a real stack of its own (PostgreSQL, Redis, two workers,
Envoy), shortened to three rows of 5 s after a 4 s calibration; the verdict's arithmetic on rows
made up for it; bad flags refused before anything starts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import bench
from bench import soak

PROCESSES = {"postgres", "redis", "envoy", "worker 1", "worker 2"}


async def test_a_short_soak_gives_sane_rows_for_every_process(tmp_path: Path) -> None:
    config = soak.SoakConfig(
        bench=replace(soak.SOAK_PRESET, users=80, celebrities=0, active_users=30, out=tmp_path),
        minutes=0.25,
        row_seconds=5.0,
        calibration_seconds=4.0,
    )
    printed: list[str] = []
    results = await soak.run_soak(config, printed.append)

    assert results["calibration"]["capacity"] > 0
    assert results["target_rate"] == pytest.approx(results["calibration"]["capacity"] * soak.LOAD_SHARE)
    rows = results["rows"]
    assert [row["end_seconds"] for row in rows] == [5.0, 10.0, 15.0]
    for row in rows:
        assert row["requests"] > 0
        assert row["errors"] <= row["requests"] * soak.MAX_ERROR_SHARE, row["error_samples"]
        assert row["p99_ms"] >= row["p50_ms"] > 0
        assert set(row["rss_mib"]) == PROCESSES
        assert all(mib > 0 for mib in row["rss_mib"].values()), row["rss_mib"]
        assert set(row["pss_mib"]) == PROCESSES
        assert all(0 < row["pss_mib"][name] <= row["rss_mib"][name] for name in PROCESSES), row
        # The postmaster and its backends, summed.
        assert len(row["pids"]["postgres"]) > 1
        assert row["redis_used_memory_mib"] > 0
        assert row["ops"]["timeline_read"]["count"] > 0
    total = sum(row["requests"] for row in rows)
    # An open loop: what was sent follows the target rate, not the stack's speed.
    assert total == pytest.approx(results["target_rate"] * 15, rel=0.5)
    # A header, its rule and one line per row, printed as the rows ended.
    table = [line for line in printed if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert table[0].startswith("| time | requests | errors | req/s | p50 ms | p99 ms | postgres MiB")
    assert table[2].startswith("| 0:05 |")
    assert results["verdict"]["requests"] == total
    json.dumps(results)  # what soak.json holds


def row(at: float, rss: dict[str, float], *, requests: int = 1000, errors: int = 0) -> dict[str, Any]:
    return {
        "end_seconds": at,
        "requests": requests,
        "errors": errors,
        "p50_ms": 5.0,
        "p99_ms": 20.0 + at / 60,
        "rss_mib": rss,
        "redis_used_memory_mib": 3.0,
    }


def test_the_verdict_measures_growth_from_the_second_row_to_the_last() -> None:
    rows = [
        row(60, {"worker 1": 10.0, "postgres": 100.0}),
        row(120, {"worker 1": 60.0, "postgres": 100.0}),
        row(180, {"worker 1": 80.0, "postgres": 119.0}),
        row(240, {"worker 1": 90.0, "postgres": 139.5}),
    ]
    steady = soak.verdict(rows)
    assert steady["ok"], steady["failures"]
    assert steady["from"] == "2:00" and steady["to"] == "4:00"
    assert steady["rss"]["worker 1"]["growth_mib"] == pytest.approx(30.0)
    assert steady["rss"]["worker 1"]["limit_mib"] == pytest.approx(60.0 * 0.2 + 20.0)

    rows[-1]["rss_mib"]["postgres"] = 140.5  # 40.5 MiB over 100: past 20% + 20 MiB
    grown = soak.verdict(rows)
    assert not grown["ok"]
    assert [failure.split()[0] for failure in grown["failures"]] == ["postgres"]
    assert "Verdict: FAILED" in soak.verdict_lines(grown)


def test_the_verdict_fails_past_one_percent_of_errors() -> None:
    rows = [row(60, {"redis": 5.0}), row(120, {"redis": 5.0}, requests=1000, errors=21)]
    assert soak.verdict(rows)["ok"] is False
    assert soak.verdict([*rows[:1], row(120, {"redis": 5.0}, errors=19)])["ok"] is True


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--soak", "0"], "--soak"),
        (["--soak", "1", "--modes", "pull,push"], "--modes"),
        (["--soak", "1", "--url", "http://127.0.0.1:1"], "--url"),
        (["--soak", "1", "--users", "5"], "--users"),
    ],
)
def test_bad_soak_flags_exit_2_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert bench.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_postgres_rss_grown_by_shared_buffers_alone_is_not_a_leak() -> None:
    rows = [row(60, {"postgres": 800.0}), row(120, {"postgres": 800.0}), row(180, {"postgres": 1200.0})]
    for at, pss in zip(rows, (300.0, 300.0, 310.0), strict=True):
        at["pss_mib"] = {"postgres": pss}
    result = soak.verdict(rows)
    assert result["ok"], result["failures"]
    assert result["rss"]["postgres"]["pss"]["growth_mib"] == pytest.approx(10.0)
    rows[-1]["pss_mib"]["postgres"] = 390.0  # 90 MiB over 300: past 20% + 20 MiB
    assert soak.verdict(rows)["failures"][0].startswith("postgres grew 400.0 MiB")
