"""The tweet routes through the gateway: create, reply, get, edit, versions, delete, replies."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers.rest import call, parse_time, sign_up, tweet


async def test_post_a_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    reply = await call(
        http, "POST", "/tweets", user=alice, json={"user_id": str(alice.id), "content": "first!"}
    )
    reply.expect(200)
    body = reply.json
    assert isinstance(body["tweet_id"], str) and int(body["tweet_id"]) > 0
    assert body["user_id"] == str(alice.id)
    assert body["content"] == "first!"
    assert body["conversation_id"] == body["tweet_id"]
    assert body["version"] == 1
    parse_time(body["created_at"])
    # Defaults are left out, as Envoy prints them: no reply_to, no edited_at.
    assert "reply_to" not in body and "edited_at" not in body and "replyTo" not in body


async def test_user_id_may_be_a_json_number(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    reply = await call(http, "POST", "/tweets", user=alice, json={"user_id": alice.id, "content": "n"})
    assert reply.expect(200).json["user_id"] == str(alice.id)


async def test_reply_to_a_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    root = await tweet(http, alice, "root")
    answer = await tweet(http, bob, "answer", reply_to=root["tweet_id"])
    assert answer["reply_to"] == root["tweet_id"]
    assert answer["reply_to_user_id"] == str(alice.id)
    assert answer["conversation_id"] == root["tweet_id"]


async def test_reply_to_a_missing_tweet_is_404(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    body = {"user_id": str(alice.id), "content": "into the void", "reply_to": "12345"}
    (await call(http, "POST", "/tweets", user=alice, json=body)).expect(404, "TWEET_NOT_FOUND")


BAD_TWEETS: list[tuple[dict[str, Any], str]] = [
    ({}, "content"),
    ({"content": ""}, "content"),
    ({"content": "x" * 281}, "content"),
    ({"content": 42}, "content"),
    ({"content": "ok", "reply_to": "not a number"}, "reply_to"),
    ({"content": "ok", "reply_to": -4}, "reply_to"),
    ({"content": "ok", "idempotency_key": "k" * 65}, "idempotency_key"),
]


async def test_post_bad_input_is_400(http: aiohttp.ClientSession) -> None:
    # Few accounts (signing up is slow on purpose), yet under limits.yaml's 5 posts per minute each.
    authors = [await sign_up(http), await sign_up(http)]
    for n, (fields, field) in enumerate(BAD_TWEETS):
        author = authors[n % 2]
        reply = await call(http, "POST", "/tweets", user=author, json={"user_id": str(author.id), **fields})
        reply.field_error(field)


async def test_post_with_a_wrong_type_user_id_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    for user_id in ("alice", True, {"id": 1}):
        reply = await call(http, "POST", "/tweets", user=alice, json={"user_id": user_id, "content": "x"})
        reply.field_error("user_id")


async def test_280_code_points_is_not_too_long(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    posted = await tweet(http, alice, "é" * 280)
    assert posted["content"] == "é" * 280


async def test_post_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    reply = await call(http, "POST", "/tweets", user=alice, data=b'{"user_id": "1", "content": "x"')
    reply.expect(400, "INVALID_ARGUMENT")


async def test_get_a_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    posted = await tweet(http, alice, "look")
    reply = (await call(http, "GET", f"/tweets/{posted['tweet_id']}", user=bob)).expect(200)
    assert reply.json == posted


async def test_get_a_bad_or_missing_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    (await call(http, "GET", "/tweets/999999999999", user=alice)).expect(404, "TWEET_NOT_FOUND")
    for tweet_id in ("abc", "-1", "1.5", "0"):
        (await call(http, "GET", f"/tweets/{tweet_id}", user=alice)).field_error("tweet_id")


async def test_edit_keeps_the_history(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    posted = await tweet(http, alice, "teh")
    path = f"/tweets/{posted['tweet_id']}"
    edited = (await call(http, "PATCH", path, user=alice, json={"content": "the"})).expect(200).json
    assert (edited["tweet_id"], edited["content"], edited["version"]) == (posted["tweet_id"], "the", 2)
    assert parse_time(edited["edited_at"]) >= parse_time(posted["created_at"])
    versions = (await call(http, "GET", f"{path}/versions", user=alice)).expect(200).json["versions"]
    assert [(v["version"], v["content"]) for v in versions] == [(1, "teh"), (2, "the")]
    for version in versions:
        parse_time(version["created_at"])
    assert (await call(http, "GET", path, user=alice)).expect(200).json["content"] == "the"


async def test_a_tweet_id_in_the_body_that_contradicts_the_path_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    first = await tweet(http, alice, "one")
    second = await tweet(http, alice, "two")
    body = {"tweet_id": second["tweet_id"], "content": "one, edited"}
    (await call(http, "PATCH", f"/tweets/{first['tweet_id']}", user=alice, json=body)).field_error("tweet_id")
    for posted, content in ((first, "one"), (second, "two")):
        unchanged = (await call(http, "GET", f"/tweets/{posted['tweet_id']}", user=alice)).expect(200)
        assert unchanged.json["content"] == content
    same = {"tweet_id": first["tweet_id"], "content": "one, edited"}
    edited = (await call(http, "PATCH", f"/tweets/{first['tweet_id']}", user=alice, json=same)).expect(200)
    assert edited.json["content"] == "one, edited"


async def test_edit_bad_input_and_missing_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    posted = await tweet(http, alice)
    path = f"/tweets/{posted['tweet_id']}"
    (await call(http, "PATCH", path, user=alice, json={"content": ""})).field_error("content")
    (await call(http, "PATCH", path, user=alice, json={"content": "y" * 281})).field_error("content")
    (await call(http, "PATCH", path, user=alice, data=b"{oops")).expect(400, "INVALID_ARGUMENT")
    missing = await call(http, "PATCH", "/tweets/999999999999", user=alice, json={"content": "z"})
    missing.expect(404, "TWEET_NOT_FOUND")
    (await call(http, "GET", "/tweets/999999999999/versions", user=alice)).expect(404, "TWEET_NOT_FOUND")


async def test_delete_a_tweet(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    posted = await tweet(http, alice, "regret")
    path = f"/tweets/{posted['tweet_id']}"
    deleted = (await call(http, "DELETE", path, user=alice)).expect(200)
    assert deleted.json == {}
    (await call(http, "GET", path, user=alice)).expect(404, "TWEET_NOT_FOUND")
    (await call(http, "DELETE", path, user=alice)).expect(404, "TWEET_NOT_FOUND")
    (await call(http, "PATCH", path, user=alice, json={"content": "undo"})).expect(404)


async def test_replies_page_oldest_first(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    root = await tweet(http, alice, "question")
    answers = [await tweet(http, bob, f"answer {n}", reply_to=root["tweet_id"]) for n in range(3)]
    path = f"/tweets/{root['tweet_id']}/replies"
    first = (await call(http, "GET", path, user=alice, params={"limit": "2"})).expect(200).json
    assert [t["tweet_id"] for t in first["tweets"]] == [a["tweet_id"] for a in answers[:2]]
    assert first["next_cursor"]
    params = {"limit": "2", "cursor": first["next_cursor"]}
    second = (await call(http, "GET", path, user=alice, params=params)).expect(200).json
    assert [t["tweet_id"] for t in second["tweets"]] == [answers[2]["tweet_id"]]
    assert "next_cursor" not in second  # an empty cursor ends the list, and is left out
    everything = (await call(http, "GET", path, user=alice)).expect(200).json
    assert len(everything["tweets"]) == 3


async def test_replies_of_a_tweet_without_any_is_an_empty_object(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    root = await tweet(http, alice)
    reply = (await call(http, "GET", f"/tweets/{root['tweet_id']}/replies", user=alice)).expect(200)
    assert reply.json == {}


BAD_PAGING = [
    ({"cursor": "not-a-cursor!"}, "cursor"),
    ({"cursor": "YzE6aG9tZToxMjM"}, "cursor"),  # a well-formed cursor of another list
    ({"limit": "-1"}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"colour": "red"}, "colour"),
]


async def test_replies_bad_paging_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    root = await tweet(http, alice)
    for params, field in BAD_PAGING:
        reply = await call(http, "GET", f"/tweets/{root['tweet_id']}/replies", user=alice, params=params)
        reply.field_error(field)
