"""The published pages say what the published run holds: docs/bench/results.md, docs/capacity.md
and the README's benchmark table are all re-rendered from docs/bench/results.json and compared.
A figure typed or edited by hand in any of them fails here."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.plots import FILES
from bench.publish import README_END, README_START, capacity_page, readme_table, with_readme_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())
    return loaded


def test_results_md_is_the_runs_own_report(results: dict[str, Any]) -> None:
    expected = report.markdown(copy.deepcopy(results), results["command"]) + "\n"
    assert (ROOT / "docs" / "bench" / "results.md").read_text() == expected


def test_capacity_page_is_rendered_from_the_run(results: dict[str, Any]) -> None:
    assert (ROOT / "docs" / "capacity.md").read_text() == capacity_page(results)


def test_readme_table_is_the_runs_summary(results: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    between = readme[readme.index(README_START) + len(README_START) : readme.index(README_END)]
    assert between.strip() == readme_table(results).strip()
    for name in FILES:
        assert (ROOT / "docs" / "bench" / name).stat().st_size > 10_000, name


def test_a_changed_figure_changes_the_pages(results: dict[str, Any]) -> None:
    changed = copy.deepcopy(results)
    changed["capacity"]["inputs"]["warm_reader_bytes"] += 1_000
    assert capacity_page(changed) != capacity_page(results)
    changed = copy.deepcopy(results)
    changed["modes"]["hybrid"]["rest"]["ops"]["timeline_read"]["throughput"] *= 2
    readme = (ROOT / "README.md").read_text()
    assert with_readme_table(readme, changed) != with_readme_table(readme, results)


def test_microblog_page_is_the_runs_own_report() -> None:
    published = ROOT / "docs" / "bench" / "microblog.json"
    if not published.is_file():
        pytest.skip("no published microblog run")
    results = json.loads(published.read_text())
    expected = report.markdown(copy.deepcopy(results), results["command"]) + "\n"
    assert (ROOT / "docs" / "bench" / "microblog.md").read_text() == expected
    assert "## Hot path: warm home-timeline reads" in expected
