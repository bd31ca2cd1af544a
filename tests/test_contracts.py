"""The generated stubs match protos/, the contracts pass buf lint, and buf breaking compares against
the newest commit that accepted a break with a Contract-Break trailer."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/protos.py", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_committed_python_stubs_are_fresh() -> None:
    result = run("check", "--python-only")
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_typescript_stubs_are_fresh() -> None:
    if not (ROOT / "clients" / "typescript" / "node_modules" / ".bin" / "protoc-gen-es").exists():
        pytest.skip("the TypeScript SDK's packages are not installed (npm ci --prefix clients/typescript)")
    result = run("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_is_clean() -> None:
    result = run("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def load_protos_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chirp_protos_script", ROOT / "scripts" / "protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


protos = load_protos_script()


def git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "--allow-empty", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_contract_breaks_need_a_reason_and_several_trailers_are_joined() -> None:
    log = "a1\x1fwhy\x1e\nb2\x1f\x1e\nc3\x1fone\x1f two \x1e\n"
    assert protos.parse_contract_breaks(log) == [
        protos.ContractBreak("a1", "why"),
        protos.ContractBreak("c3", "one; two"),
    ]


def test_the_newest_contract_break_after_the_ref_is_the_baseline(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    base = commit(tmp_path, "Users and tweets")
    first = commit(tmp_path, "GetUser returns the User\n\nContract-Break: AIP-131")
    commit(tmp_path, "Tweets get media")
    second = commit(
        tmp_path, "Drop v1 media\n\nSome words.\ncontract-break: nobody used it\nSigned-off-by: Ada"
    )
    # Not trailers: in the body but not its last paragraph, and an empty reason.
    commit(tmp_path, "Say why\n\nContract-Break: not a trailer here\n\nSee the docs.")
    commit(tmp_path, "Nothing to see\n\nContract-Break:")

    breaks = protos.contract_breaks(base, tmp_path)
    assert breaks == [protos.ContractBreak(second, "nobody used it"), protos.ContractBreak(first, "AIP-131")]
    assert protos.breaking_baseline(base, tmp_path) == second
    assert protos.breaking_baseline(first, tmp_path) == second
    # From the break on, later commits are compared as usual: a new break needs a new trailer.
    assert protos.breaking_baseline(second, tmp_path) == second
    assert protos.breaking_baseline("HEAD~1", tmp_path) == "HEAD~1"
    assert protos.breaking_baseline("no-such-ref", tmp_path) is None
