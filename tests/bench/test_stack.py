"""The benchmark's own stack: Envoy in front of every worker, as `chirp up --processes N` runs it."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from bench.stackctl import stack_settings, start_on_free_ports
from chirp_app.embedded_redis import EmbeddedRedis
from chirp_core.settings import Settings


def _timeline_endpoints(admin_url: str) -> set[str]:
    with urllib.request.urlopen(f"{admin_url}/clusters", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {line.split("::")[1] for line in lines if line.startswith("timeline::") and "::cx_total::" in line}


@pytest.mark.asyncio
async def test_envoy_of_the_benchs_stack_balances_over_every_worker(
    tmp_path: Path, database_url: str, redis_server: EmbeddedRedis
) -> None:
    def make_settings() -> Settings:
        return stack_settings(
            tmp_path, database_url, redis_server.url, mode="push", threshold=10, overrides={}, processes=2
        )

    settings, running = await start_on_free_ports(make_settings, 2)
    try:
        endpoints = await asyncio.to_thread(_timeline_endpoints, running.envoy.admin_url)
        stride = settings.worker_port_stride
        assert endpoints == {
            f"127.0.0.1:{settings.timeline_port}",
            f"127.0.0.1:{settings.timeline_port + stride}",
        }
    finally:
        await running.stop()
