"""The media janitor: uploads never attached go after the pending TTL, queued deletions are done
at least once, and a store that fails is retried later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from chirp_core.db import migrate
from chirp_core.errors import Unavailable
from tests.helpers import media_files as files
from tests.helpers.api import Api, rpc_error
from tests.helpers.media import tweet_with_media, upload
from tests.tweets_svc.media.conftest import fresh_database
from tweets_svc.media.janitor import MediaJanitor
from tweets_svc.media.storage import MediaStorage
from tweets_svc.media.stores.local import LocalMediaStore

PNG = files.png(8, 8)


async def _until_gone(path: Path, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} still there after {seconds}s"
        await asyncio.sleep(0.05)


def _backdate(database_url: str, media_id: int, days: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE tweets.media SET created_at = now() - make_interval(days => %s) WHERE media_id = %s",
            (days, media_id),
        )


async def test_an_upload_never_attached_is_removed_after_the_ttl(
    api: Api, database_url: str, local_store: LocalMediaStore
) -> None:
    author = await api.new_user()
    stale = await upload(api, author.user_id, PNG, "image/png")
    fresh = await upload(api, author.user_id, PNG, "image/png")
    with psycopg.connect(database_url) as conn:
        keys = dict(conn.execute("SELECT media_id, object_key FROM tweets.media").fetchall())
    _backdate(database_url, stale, days=2)

    await _until_gone(local_store.path_of(keys[stale]))
    error = await rpc_error(tweet_with_media(api, author.user_id, [stale]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    # The recent upload is untouched and still attaches.
    assert local_store.path_of(keys[fresh]).exists()
    assert len((await tweet_with_media(api, author.user_id, [fresh])).media) == 1


async def test_attached_media_never_expire(api: Api, database_url: str, local_store: LocalMediaStore) -> None:
    author = await api.new_user()
    tweet = await tweet_with_media(api, author.user_id, [await upload(api, author.user_id, PNG, "image/png")])
    _backdate(database_url, tweet.media[0].media_id, days=30)
    await asyncio.sleep(0.6)  # three sweeps
    key = tweet.media[0].url.removeprefix(local_store.upload_url)
    assert local_store.path_of(key).exists()


class _FlakyStore:
    """The real local store, except that the first `failures` deletes fail as S3 outages do."""

    def __init__(self, store: LocalMediaStore, failures: int) -> None:
        self.store = store
        self.failures = failures

    async def delete(self, key: str) -> None:
        if self.failures:
            self.failures -= 1
            raise Unavailable("the media store is unavailable: 503", reason="MEDIA_STORE_UNAVAILABLE")
        await self.store.delete(key)


@pytest_asyncio.fixture(loop_scope="session")
async def janitor_pool(postgres_server: str) -> AsyncIterator[AsyncConnectionPool]:
    """A database of its own, so that no running janitor takes the rows of this test."""
    with fresh_database(postgres_server, "janitor") as url:
        await migrate(url, "tweets", "tweets_svc.migrations")
        async with AsyncConnectionPool(url, kwargs={"autocommit": True}, open=False) as pool:
            yield pool


async def test_a_failed_delete_is_retried_after_its_lease(
    janitor_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    store = LocalMediaStore(tmp_path, "http://unused/", b"secret")
    storage = MediaStorage(janitor_pool)
    key = "a" * 32 + ".png"
    store.path_of(key).parent.mkdir(parents=True)
    store.path_of(key).write_bytes(PNG)
    await storage.insert_pending(1, 7, key, "image/png", len(PNG))
    flaky = _FlakyStore(store, failures=1)
    janitor = MediaJanitor(storage, flaky, pending_ttl_seconds=0, interval_seconds=1)  # type: ignore[arg-type]

    first = await janitor.sweep()
    assert (first.expired, first.deleted, first.failed) == (1, 0, 1)
    assert store.path_of(key).exists()
    # Leased: an immediate sweep leaves the row alone.
    assert (await janitor.sweep()).deleted == 0
    async with janitor_pool.connection() as conn:
        await conn.execute("UPDATE tweets.media_outbox SET available_at = now() - interval '1 second'")
    second = await janitor.sweep()
    assert (second.deleted, second.failed) == (1, 0)
    assert not store.path_of(key).exists()
    async with janitor_pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM tweets.media_outbox")
        assert await cur.fetchone() == (0,)
