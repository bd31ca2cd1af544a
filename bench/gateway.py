"""A quick load measurement of the gateway: GET /timeline for a user following 50 accounts, next
to GET /healthz. Not a test (pytest does not collect it):

    python bench/gateway.py [--seconds 10] [--concurrency 16]

A child process runs embedded PostgreSQL, the three services and the edge (rate limits off, as
for any load test); this process signs the accounts up, then drives the load with aiohttp. Both
share the machine's cores, so the figures are a floor, not a capacity plan."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

AUTHORS = 50
PASSWORD = "correct horse battery"


async def _serve(data_dir: Path) -> None:
    import psycopg

    from chirp_core.embedded_pg import EmbeddedPostgres
    from chirp_core.settings import Settings
    from chirp_core.stack import start_stack

    postgres = EmbeddedPostgres(data_dir / "pg")
    await asyncio.to_thread(postgres.start)
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    settings = Settings(
        data_dir=data_dir,
        database_url=psycopg.conninfo.make_conninfo(postgres.dsn, dbname="bench"),
        graph_port=0,
        tweets_port=0,
        timeline_port=0,
        auth_port=0,
        http_port=0,
        rate_limits="off",
        log_level="WARNING",
    )
    stack = await start_stack(settings)
    assert stack.edge is not None
    print(stack.edge.url, flush=True)
    try:
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    finally:
        await stack.stop()
        await asyncio.to_thread(postgres.stop)


async def _json(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> Any:
    async with http.request(method, path, **kwargs) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {body}")
        return body


async def _account(http: aiohttp.ClientSession) -> tuple[str, dict[str, str]]:
    handle = f"bench_{uuid.uuid4().hex[:12]}"
    user = await _json(http, "POST", "/users", json={"handle": handle, "password": PASSWORD})
    session = await _json(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})
    return user["user_id"], {"Authorization": f"Bearer {session['token']}"}


async def _prepare(http: aiohttp.ClientSession) -> tuple[str, dict[str, str]]:
    reader_id, reader = await _account(http)
    gate = asyncio.Semaphore(4)

    async def author(n: int) -> None:
        async with gate:
            author_id, headers = await _account(http)
        await _json(
            http, "POST", "/follow", headers=reader, json={"follower_id": reader_id, "followee_id": author_id}
        )
        for k in range(2):
            body = {"user_id": author_id, "content": f"tweet {k} of author {n}"}
            await _json(http, "POST", "/tweets", headers=headers, json=body)

    await asyncio.gather(*(author(n) for n in range(AUTHORS)))
    page = await _json(http, "GET", "/timeline", headers=reader, params={"user_id": reader_id})
    print(
        f"reader follows {AUTHORS} accounts; first page has {len(page.get('tweets', []))} tweets", flush=True
    )
    return reader_id, reader


async def _load(
    http: aiohttp.ClientSession, path: str, headers: dict[str, str], seconds: float, concurrency: int
) -> str:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            async with http.get(path, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return (
        f"{path.split('?')[0]:<10} {len(latencies) / elapsed:8.0f} req/s   p50 {cuts[49] * 1000:6.1f} ms"
        f"   p99 {cuts[98] * 1000:6.1f} ms   ({len(latencies)} requests, {errors} errors)"
    )


async def _bench(seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chirp-bench-") as data_dir:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            data_dir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert child.stdout is not None
            url = (await child.stdout.readline()).decode().strip()
            if not url.startswith("http"):
                raise RuntimeError("the stack did not start")
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(base_url=url, connector=connector) as http:
                reader_id, reader = await _prepare(http)
                timeline = f"/timeline?user_id={reader_id}"
                for path, headers in ((timeline, reader), ("/healthz", {})):
                    await _load(http, path, headers, 2.0, concurrency)  # warm-up
                    print(await _load(http, path, headers, seconds, concurrency), flush=True)
        finally:
            if child.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    child.stdin.close()
            await asyncio.wait_for(child.wait(), 60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve)))
    else:
        print(
            f"{os.cpu_count()} CPUs, {args.concurrency} concurrent clients, {args.seconds:.0f} s per path",
            flush=True,
        )
        asyncio.run(_bench(args.seconds, args.concurrency))


if __name__ == "__main__":
    main()
