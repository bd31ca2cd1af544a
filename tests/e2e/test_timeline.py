"""GET /timeline (the home timeline) and GET /users/{user_id}/tweets through the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.helpers.rest import call, follow, sign_up, tweet


async def _home(http: aiohttp.ClientSession, user: Any, **params: str) -> dict[str, Any]:
    reply = await call(http, "GET", "/timeline", user=user, params={"user_id": str(user.id), **params})
    document: dict[str, Any] = reply.expect(200).json
    return document


async def test_home_timeline_newest_first_with_authors_and_paging(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    carol = await sign_up(http)
    await follow(http, alice, bob)
    posted = [
        await tweet(http, bob, "bob 1"),
        await tweet(http, alice, "alice 1"),
        await tweet(http, carol, "carol, not followed"),
        await tweet(http, bob, "bob 2"),
    ]
    expected = [posted[3]["tweet_id"], posted[1]["tweet_id"], posted[0]["tweet_id"]]
    for _ in range(50):  # followers see a tweet within a bounded lag
        page = await _home(http, alice)
        if [t["tweet_id"] for t in page.get("tweets", [])] == expected:
            break
        await asyncio.sleep(0.1)
    assert [t["tweet_id"] for t in page["tweets"]] == expected
    newest = page["tweets"][0]
    assert newest["author"]["handle"] == bob.handle
    assert newest["author"]["user_id"] == str(bob.id)
    assert newest["content"] == "bob 2"
    first = await _home(http, alice, limit="2")
    assert [t["tweet_id"] for t in first["tweets"]] == expected[:2]
    second = await _home(http, alice, limit="2", cursor=first["next_cursor"])
    assert [t["tweet_id"] for t in second["tweets"]] == expected[2:]
    assert "next_cursor" not in second


async def test_an_empty_home_timeline_is_an_empty_object(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    assert await _home(http, alice) == {}


async def test_home_timeline_bad_input_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    cases = [
        ({"cursor": "garbage"}, "cursor"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "twenty"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"user_id": "me"}, "user_id"),
    ]
    for params, field in cases:
        query = {"user_id": str(alice.id), **params}
        (await call(http, "GET", "/timeline", user=alice, params=query)).field_error(field)


async def test_user_timeline(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    posted = [await tweet(http, bob, f"bob {n}") for n in range(3)]
    await tweet(http, alice, "not bob's")
    path = f"/users/{bob.id}/tweets"
    first = (await call(http, "GET", path, user=alice, params={"limit": "2"})).expect(200).json
    assert [t["tweet_id"] for t in first["tweets"]] == [posted[2]["tweet_id"], posted[1]["tweet_id"]]
    assert all(t["author"]["handle"] == bob.handle for t in first["tweets"])
    rest = (
        (await call(http, "GET", path, user=alice, params={"cursor": first["next_cursor"]})).expect(200).json
    )
    assert [t["tweet_id"] for t in rest["tweets"]] == [posted[0]["tweet_id"]]


async def test_user_timeline_errors(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    (await call(http, "GET", f"/users/{alice.id + 10**9}/tweets", user=alice)).expect(404, "USER_NOT_FOUND")
    (await call(http, "GET", f"/users/{alice.id}/tweets", user=alice, params={"limit": "-2"})).field_error(
        "limit"
    )
    bad_cursor = await call(http, "GET", f"/users/{alice.id}/tweets", user=alice, params={"cursor": "abc"})
    bad_cursor.field_error("cursor")
    (await call(http, "GET", "/users/x/tweets", user=alice)).field_error("user_id")
