"""deploy/netns/rehearse.py end to end: Chirp on six network-namespace hosts of this machine (a
PostgreSQL primary and its streaming replica, Redis, two app hosts, Envoy), the README's REST
walkthrough through Envoy, follower lists read on the replica, and nothing left behind.

Needs root and working `ip netns add`; skips with the reason otherwise. It runs on a subnet and
with namespace names of its own, so that a rehearsal started by hand does not collide with it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "chirpt-"
SUBNET = "10.78.0.0/24"
TIMEOUT_SECONDS = 300


def _netns_problem() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    for program in ("ip", "setpriv"):
        if shutil.which(program) is None:
            return f"no `{program}` on PATH"
    probe = f"{PREFIX}probe{os.getpid() % 10000}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=20)
    if added.returncode != 0:
        return f"`ip netns add` does not work here: {added.stderr.strip()}"
    try:
        veth = subprocess.run(
            ["ip", "-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if veth.returncode != 0:
            return f"no veth links in a network namespace: {veth.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20)
    return None


def _our_namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(PREFIX)]


def _rehearse(*args: str, timeout: float = TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.netns.rehearse", "--prefix", PREFIX, "--subnet", SUBNET, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def netns() -> None:
    problem = _netns_problem()
    if problem is not None:
        pytest.skip(f"network namespaces unusable: {problem}")
    if _our_namespaces():
        pytest.skip(f"namespaces {_our_namespaces()} exist already (another run of this test?)")


def test_rehearsal_on_namespace_hosts(netns: None) -> None:
    try:
        result = _rehearse()
    finally:
        # Only a rehearsal killed by the timeout leaves anything; --clean removes it.
        if _our_namespaces():
            _rehearse("--clean", timeout=60)
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, f"the rehearsal failed (exit {result.returncode}):\n{output}"
    summary = re.search(r"^RESULT timeline_has_tweet=(\w+) replica_reads=(-?\d+)$", result.stdout, re.M)
    assert summary is not None, f"no RESULT line:\n{output}"
    assert summary[1] == "yes", "bob's tweet is not in ada's home timeline"
    assert int(summary[2]) > 0, "no follower-list read was counted on the replica"
    assert "hello from two app hosts" in result.stdout
    assert _our_namespaces() == [], "the rehearsal left namespaces behind"
    assert not Path("/sys/class/net", f"{PREFIX}lan0").exists(), "the rehearsal left its uplink behind"
