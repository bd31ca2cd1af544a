"""The README's curl walkthrough runs as written against a real `chirp up`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.core.test_chirp_up import chirp_up

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    section = README.read_text().split("## The REST API, with curl", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no sh block in the README's REST section"
    return match.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_curl_walkthrough_works_verbatim(tmp_path: Path) -> None:
    script = walkthrough()
    assert "API=http://127.0.0.1:8080" in script
    with chirp_up(tmp_path / "data") as started:
        run = subprocess.run(
            ["bash", "-e", "-c", script.replace("http://127.0.0.1:8080", started.url)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    out = run.stdout
    assert run.returncode == 0, run.stderr + out
    lines = out.splitlines()
    assert lines[0] == "{}"  # the follow
    assert [line.count('"content"') for line in lines[1:4]] == [1, 1, 1]  # three tweets
    first_page, second_page = lines[4], lines[5]
    assert '"third time lucky"' in first_page and '"second coffee"' in first_page
    assert '"next_cursor"' in first_page
    assert '"first light"' in second_page and '"next_cursor"' not in second_page
    assert any(line.startswith("data: ") and "live from the stream" in line for line in lines)
    assert lines[-2].endswith(" 403") and lines[-1].endswith(" 401")
