"""deploy/nginx-cdn.conf in front of an S3 server (moto), with the tweets service on S3: a 5 MB
photo goes from the client straight to the bucket, a tweet carries its CDN URL, nginx serves it
(MISS, then HIT without asking the bucket again), and our process only ever read its first bytes.

Counting proxies stand between the tweets service and the bucket, and between nginx and the
bucket, and note every request and byte that passes."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import grpc
import pytest
import pytest_asyncio

from chirp.tweets.v1 import tweets_pb2_grpc
from chirp_core.grpc_server import RunningServer
from chirp_core.settings import Settings
from tests.helpers import media_files as files
from tests.helpers.api import Api, free_port
from tests.helpers.media import grant, post_form, tweet_with_media
from tests.helpers.tcp_proxy import CountingProxy
from tests.tweets_svc.media.conftest import BUCKET, fresh_database
from tweets_svc.media.probe import HEAD_BYTES
from tweets_svc.server import start as start_tweets

log = logging.getLogger("chirp.tests.tweets_svc.media")
CDN_CONF = Path(__file__).resolve().parents[3] / "deploy" / "nginx-cdn.conf"
MB = 1024 * 1024
# What a HEAD and one ranged GET of HEAD_BYTES cost with their HTTP headers, with room to spare.
SNIFF_BUDGET_BYTES = HEAD_BYTES + 8 * 1024


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@dataclass
class Cdn:
    url: str
    origin: CountingProxy


@pytest.fixture(scope="module")
def nginx() -> str:
    found = find_nginx()
    if found is None:
        pytest.skip("nginx is not installed (apt-get install nginx); the CDN test needs the real one")
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cdn(nginx: str, moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cdn]:
    """nginx with deploy/nginx-cdn.conf, its origin the test bucket behind a counting proxy."""
    moto = urlsplit(moto_url)
    origin = CountingProxy(moto.hostname or "127.0.0.1", moto.port or 80)
    origin_url = await origin.start()
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    site = CDN_CONF.read_text()
    for name, value in {
        "CDN_LISTEN": f"127.0.0.1:{port}",
        "CDN_ORIGIN": f"{origin_url}/{BUCKET}/",
        "CDN_CACHE_DIR": str(prefix / "cache"),
        "CDN_CACHE_SIZE": "1g",
    }.items():
        site = site.replace("${" + name + "}", value)
    assert "${" not in site
    (prefix / "chirp-cdn.conf").write_text(site)
    # The main file a distribution's nginx.conf would be, with everything under the prefix.
    (prefix / "nginx.conf").write_text(
        "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log error.log warn;\n"
        "events { worker_connections 64; }\n"
        "http {\n  access_log off;\n  client_body_temp_path tmp/body;\n  proxy_temp_path tmp/proxy;\n"
        "  fastcgi_temp_path tmp/fastcgi;\n  uwsgi_temp_path tmp/uwsgi;\n  scgi_temp_path tmp/scgi;\n"
        "  include chirp-cdn.conf;\n}\n"
    )
    (prefix / "tmp").mkdir()
    arguments = ["-p", str(prefix), "-c", "nginx.conf"]
    check = await asyncio.create_subprocess_exec(nginx, "-t", *arguments, stderr=subprocess.PIPE)
    _, errors = await check.communicate()
    assert check.returncode == 0, errors.decode()
    process = await asyncio.create_subprocess_exec(nginx, *arguments, stderr=subprocess.PIPE)
    try:
        await _wait_for_port(port, process)
        yield Cdn(f"http://127.0.0.1:{port}/", origin)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.communicate(), 10)
        await origin.close()


async def _wait_for_port(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert process.returncode is None, "nginx exited"
            assert time.monotonic() < deadline, "nginx did not start listening"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


@dataclass
class S3Tweets:
    api: Api
    server: RunningServer
    store_link: CountingProxy


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def s3_tweets(
    postgres_server: str, moto_url: str, cdn: Cdn, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[S3Tweets]:
    """The tweets service on S3 with the CDN in front. It reaches the bucket through a counting
    proxy; clients upload to the bucket's own address."""
    moto = urlsplit(moto_url)
    link = CountingProxy(moto.hostname or "127.0.0.1", moto.port or 80)
    link_url = await link.start()
    with fresh_database(postgres_server, "cdn") as url:
        settings = Settings(
            host="127.0.0.1",
            data_dir=tmp_path_factory.mktemp("cdn-tweets"),
            media_store="s3",
            media_s3_bucket=BUCKET,
            media_s3_region="us-east-1",
            media_s3_endpoint_url=link_url,
            media_s3_upload_endpoint_url=moto_url,
            media_cdn_base=cdn.url,
        )
        server = await start_tweets(settings, url, 0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        api = Api(users=None, graph=None, tweets=tweets_pb2_grpc.TweetServiceStub(channel), timeline=None)  # type: ignore[arg-type]
        try:
            yield S3Tweets(api, server, link)
        finally:
            await channel.close()
            await server.stop(0.5)
            await link.close()


async def _fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_media_go_client_to_bucket_and_cdn_to_client_never_through_us(
    s3_tweets: S3Tweets, cdn: Cdn, moto_url: str
) -> None:
    photo = files.png(4000, 3000, size=5 * MB)
    author = 21
    granted = await grant(s3_tweets.api, author, "image/png", len(photo))
    assert granted.upload.url.startswith(moto_url)  # the bucket itself, not one of our processes

    s3_tweets.store_link.reset()
    status, body = await post_form(granted.upload.url, granted.upload.fields, photo, file_type="image/png")
    assert status == 204, body
    tweet = await tweet_with_media(s3_tweets.api, author, [granted.media_id], "5 MB, straight up")
    [media] = tweet.media
    assert media.url == cdn.url + granted.upload.fields["key"]
    assert (media.width, media.height, media.size_bytes) == (4000, 3000, len(photo))

    # Everything the tweets service exchanged with the bucket: one HEAD and one ranged GET.
    link = s3_tweets.store_link
    assert [r.method for r in link.requests] == ["HEAD", "GET"], link.requests
    assert link.requests[1].range == f"bytes=0-{HEAD_BYTES - 1}"
    assert link.received_from_upstream < SNIFF_BUDGET_BYTES, link.received_from_upstream
    assert link.sent_upstream < SNIFF_BUDGET_BYTES, link.sent_upstream
    log.info(
        "a %d-byte upload: the tweets service sent %d and received %d bytes to and from the bucket (%s)",
        len(photo),
        link.sent_upstream,
        link.received_from_upstream,
        ", ".join(f"{r.method} {r.range or ''}".strip() for r in link.requests),
    )

    cdn.origin.reset()
    first_status, first, first_headers = await _fetch(media.url)
    second_status, second, second_headers = await _fetch(media.url)
    assert (first_status, second_status) == (200, 200)
    assert first_headers["X-Cache-Status"] == "MISS"
    assert second_headers["X-Cache-Status"] == "HIT"
    assert first == second == photo
    assert second_headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert second_headers["Content-Type"] == "image/png"
    assert "x-amz-request-id" not in {name.lower() for name in second_headers}
    # The bucket served the object once, to nginx; the HIT never reached it.
    assert [r.method for r in cdn.origin.requests] == ["GET"], cdn.origin.requests
    assert cdn.origin.received_from_upstream >= len(photo)
    # And the tweets service still saw no more than the sniffed header.
    assert link.received_from_upstream < SNIFF_BUDGET_BYTES


async def test_the_cdn_only_reads(cdn: Cdn) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(cdn.url + "anything.png", data=b"x") as response:
            assert response.status == 403
        async with session.get(cdn.url) as response:
            assert response.status == 404
        async with session.get(cdn.url + "never-uploaded.png") as response:
            assert response.status in (403, 404)
            assert response.headers["X-Cache-Status"] == "MISS"


def test_the_shipped_config_has_only_the_documented_placeholders() -> None:
    assert set(re.findall(r"\$\{(\w+)\}", CDN_CONF.read_text())) == {
        "CDN_LISTEN",
        "CDN_ORIGIN",
        "CDN_CACHE_DIR",
        "CDN_CACHE_SIZE",
    }
