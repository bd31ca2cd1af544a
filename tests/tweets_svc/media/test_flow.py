"""The whole path through the real gateway with the local store, as a client would walk it: a
grant, the bytes straight to the upload URL, a tweet with the media ID, the follower's timelines
and live stream showing the media URL, the URL serving the same bytes; and a delete that removes
the object."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.helpers import media_files as files
from tests.helpers.media import post_form
from tests.helpers.rest import User, call, follow, sign_up
from tweets_svc.media.stores.local import LocalMediaStore
from tweets_svc.media.stores.object_store import CACHE_CONTROL

DEADLINE_SECONDS = 10.0


async def _upload(http: aiohttp.ClientSession, user: User, data: bytes, content_type: str) -> str:
    granted = await call(
        http, "POST", "/media", user=user, json={"content_type": content_type, "size_bytes": len(data)}
    )
    granted.expect(200)
    upload = granted.json["upload"]
    status, body = await post_form(upload["url"], upload["fields"], data, file_type=content_type)
    assert status == 204, body
    media_id: str = granted.json["media_id"]
    return media_id


async def _until(probe: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = await probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_SECONDS}s"
        await asyncio.sleep(0.05)


async def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_upload_tweet_timeline_download(
    http: aiohttp.ClientSession, local_store: LocalMediaStore
) -> None:
    author, follower = await sign_up(http), await sign_up(http)
    await follow(http, follower, author)
    photo = files.jpeg(1200, 800, exif_bytes=20_000)
    media_id = await _upload(http, author, photo, "image/jpeg")

    stream_params = {"user_id": str(follower.id)}
    async with http.get("/timeline/stream", params=stream_params, headers=follower.headers) as stream:
        assert stream.status == 200
        posted = await call(
            http, "POST", "/tweets", user=author, json={"user_id": str(author.id), "media_ids": [media_id]}
        )
        posted.expect(200)
        tweet = posted.json
        [media] = tweet["media"]
        assert media["media_id"] == media_id
        assert media["content_type"] == "image/jpeg"
        assert media["size_bytes"] == str(len(photo))
        assert (media["width"], media["height"]) == (1200, 800)
        assert media["url"].startswith(local_store.upload_url)
        assert "content" not in tweet  # empty: a photo alone

        raw = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), DEADLINE_SECONDS)
        assert media["url"].encode() in raw

    async def home_shows_it() -> Any:
        page = await call(http, "GET", "/timeline", user=follower, params={"user_id": str(follower.id)})
        page.expect(200)
        return [t for t in page.json.get("tweets", []) if t["tweet_id"] == tweet["tweet_id"]]

    [on_home] = await _until(home_shows_it, "the follower's home timeline shows the tweet")
    assert on_home["media"] == tweet["media"]
    assert on_home["author"]["handle"] == author.handle
    own = await call(http, "GET", f"/users/{author.id}/tweets", user=follower)
    assert own.expect(200).json["tweets"][0]["media"] == tweet["media"]
    single = await call(http, "GET", f"/tweets/{tweet['tweet_id']}", user=follower)
    assert single.expect(200).json["media"] == tweet["media"]

    status, body, headers = await _get(media["url"])
    assert status == 200 and body == photo
    assert headers["Cache-Control"].startswith(CACHE_CONTROL + ", s-maxage=")

    (await call(http, "DELETE", f"/tweets/{tweet['tweet_id']}", user=author)).expect(200)
    key = media["url"].removeprefix(local_store.upload_url)

    async def object_gone() -> bool:
        return not local_store.path_of(key).exists()

    await _until(object_gone, "the deleted tweet's media object is removed")

    async def not_served() -> bool:
        return (await _get(media["url"]))[0] == 404

    # Envoy's cache (the CDN) asks the store again once its s-maxage is over.
    await _until(not_served, "the CDN stops serving the deleted object")


async def test_a_tweet_with_text_and_two_images(http: aiohttp.ClientSession) -> None:
    author = await sign_up(http)
    first = await _upload(http, author, files.png(10, 20), "image/png")
    second = await _upload(http, author, files.gif(30, 40), "image/gif")
    body = {"user_id": str(author.id), "content": "two", "media_ids": [second, first]}
    tweet = (await call(http, "POST", "/tweets", user=author, json=body)).expect(200).json
    assert [m["media_id"] for m in tweet["media"]] == [second, first]
    assert [(m["width"], m["height"]) for m in tweet["media"]] == [(30, 40), (10, 20)]

    five = {"user_id": str(author.id), "content": "five", "media_ids": [first] * 5}
    (await call(http, "POST", "/tweets", user=author, json=five)).field_error("media_ids")
