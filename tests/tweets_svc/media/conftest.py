"""The media tests run on a stack of their own: its own database, so that no other stack's media
janitor or outbox relay works its rows; the edge on a port chosen before start, because the tweets
service must know the gateway's /media/ URL (the local store's bucket and CDN) when it starts; a
media janitor that sweeps every 0.2 s; rate limits off. The S3 tests add moto's S3 server."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import boto3
import psycopg
import pytest
import pytest_asyncio
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from chirp_app.stack import Stack, start_stack
from tests.conftest import settings_for_tests
from tests.helpers.api import Api, api_for
from tweets_svc.media.stores.local import LocalMediaStore

AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
BUCKET = "chirp-media-test"
CDN_READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "CdnReadsObjects",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
        }
    ],
}


@contextmanager
def fresh_database(server_url: str, label: str) -> Iterator[str]:
    """A database of its own on the test PostgreSQL server, dropped afterwards."""
    name = f"chirp_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="package")
def database_url(postgres_server: str) -> Iterator[str]:
    with fresh_database(postgres_server, "media") as url:
        yield url


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data_dir = tmp_path_factory.mktemp("media-stack")
    settings = settings_for_tests(
        database_url,
        data_dir,
        # Envoy's port: chosen by start_stack before the services start (media URLs name it).
        http_port=0,
        auth_port=0,
        rate_limits="off",
        media_janitor_interval_seconds=0.2,
        # Envoy's media cache asks the store again after this: a deleted object goes soon.
        media_shared_cache_seconds=3,
    )
    running = await start_stack(settings, with_edge=True)
    yield running
    await running.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with api_for(stack) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="session")
async def http(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the media stack's gateway; paths are relative to its URL."""
    assert stack.edge is not None
    async with aiohttp.ClientSession(base_url=stack.edge.url) as session:
        yield session


@pytest.fixture
def local_store(stack: Stack) -> LocalMediaStore:
    """The store the media stack's tweets service and gateway share, opened on its directory."""
    return LocalMediaStore.from_settings(stack.settings)


@pytest.fixture(scope="package")
def aws_environment() -> Iterator[None]:
    """Credentials for boto3's default chain (moto accepts any)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="package")
def moto_url(aws_environment: None) -> Iterator[str]:
    """moto's standalone S3 server on a free port, with the test bucket made."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    # The CDN reads objects without credentials, as deploy/nginx-cdn.conf says to set it up.
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(CDN_READ_POLICY))
    try:
        yield url
    finally:
        server.stop()
