"""The README's curl walkthrough runs as written against a real `chirp up`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.chirp_process import chirp_up

README = Path(__file__).resolve().parents[1] / "README.md"


def code_block(heading: str, language: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block under {heading!r} in the README"
    return match.group(1)


def walkthrough() -> str:
    return code_block("## The REST API, with curl", "sh")


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
    # The service's 403 body ends where curl's status follows; Envoy's own 401 (no access token)
    # ends with a newline, so its status is a line of its own.
    assert lines[-3].endswith(" 403") and '"code":16' in lines[-2] and lines[-1] == " 401"


def test_grpc_snippet_works_verbatim(tmp_path: Path) -> None:
    snippet = code_block("## Talking to the services over gRPC", "python")
    with chirp_up(tmp_path / "data") as started:
        for default, actual in (
            ("127.0.0.1:50051", started.graph),
            ("127.0.0.1:50052", started.tweets),
            ("127.0.0.1:50053", started.timeline),
        ):
            assert default in snippet
            snippet = snippet.replace(default, actual)
        run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["bob hello, Chirp"]
