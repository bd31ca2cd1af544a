"""POST / DELETE /follow, the followers and following lists, and relationships."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers.rest import User, call, follow, parse_time, sign_up


def _edge(follower: User, followee: User) -> dict[str, str]:
    return {"follower_id": str(follower.id), "followee_id": str(followee.id)}


async def test_follow_then_unfollow(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    followed = (await call(http, "POST", "/follow", user=alice, json=_edge(alice, bob))).expect(200)
    assert followed.json == {}
    relation = f"/users/{alice.id}/relationships/{bob.id}"
    assert (await call(http, "GET", relation, user=alice)).expect(200).json == {"following": True}
    reverse = f"/users/{bob.id}/relationships/{alice.id}"
    assert (await call(http, "GET", reverse, user=bob)).expect(200).json == {"followed_by": True}
    # Following twice is not an error.
    (await call(http, "POST", "/follow", user=alice, json=_edge(alice, bob))).expect(200)
    unfollowed = (await call(http, "DELETE", "/follow", user=alice, json=_edge(alice, bob))).expect(200)
    assert unfollowed.json == {}
    # Neither direction: every field is a default, so the object is empty (Envoy's printing).
    assert (await call(http, "GET", relation, user=alice)).expect(200).json == {}
    (await call(http, "DELETE", "/follow", user=alice, json=_edge(alice, bob))).expect(200)


async def test_mutual_relationship(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    await follow(http, alice, bob)
    await follow(http, bob, alice)
    relation = await call(http, "GET", f"/users/{alice.id}/relationships/{bob.id}", user=bob)
    assert relation.expect(200).json == {"following": True, "followed_by": True}


async def test_followers_and_following_lists_page_newest_first(http: aiohttp.ClientSession) -> None:
    star = await sign_up(http)
    fans = [await sign_up(http) for _ in range(3)]
    for fan in fans:
        await follow(http, fan, star)
    path = f"/users/{star.id}/followers"
    first = (await call(http, "GET", path, user=star, params={"limit": "2"})).expect(200).json
    assert [u["user_id"] for u in first["users"]] == [str(fans[2].id), str(fans[1].id)]
    assert first["users"][0]["handle"] == fans[2].handle
    parse_time(first["users"][0]["created_at"])
    second_params = {"limit": "2", "cursor": first["next_cursor"]}
    second = (await call(http, "GET", path, user=star, params=second_params)).expect(200).json
    assert [u["user_id"] for u in second["users"]] == [str(fans[0].id)]
    assert "next_cursor" not in second
    following = (await call(http, "GET", f"/users/{fans[0].id}/following", user=star)).expect(200).json
    assert [u["user_id"] for u in following["users"]] == [str(star.id)]
    nobody = (await call(http, "GET", f"/users/{star.id}/following", user=star)).expect(200).json
    assert nobody == {}


async def test_list_bad_paging_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    cases = [
        ({"cursor": "%%%"}, "cursor"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"page": "2"}, "page"),
    ]
    for path in ("followers", "following"):
        for params, field in cases:
            (await call(http, "GET", f"/users/{alice.id}/{path}", user=alice, params=params)).field_error(
                field
            )


async def test_a_cursor_of_another_users_list_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    bob = await sign_up(http)
    for fan in (await sign_up(http), await sign_up(http)):
        await follow(http, fan, alice)
    page = (await call(http, "GET", f"/users/{alice.id}/followers", user=alice, params={"limit": "1"})).json
    reply = await call(
        http, "GET", f"/users/{bob.id}/followers", user=alice, params={"cursor": page["next_cursor"]}
    )
    reply.field_error("cursor")


async def test_lists_of_an_unknown_user_are_404(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    for path in ("followers", "following"):
        (await call(http, "GET", f"/users/{alice.id + 10**9}/{path}", user=alice)).expect(
            404, "USER_NOT_FOUND"
        )


async def test_follow_bad_input(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    me = str(alice.id)
    for followee, field in ((me, "followee_id"), ("abc", "followee_id"), (me, "")):
        body: dict[str, Any] = {"follower_id": me, "followee_id": followee}
        if not field:
            body = {"follower_id": "1.5", "followee_id": me}
            field = "follower_id"
        (await call(http, "POST", "/follow", user=alice, json=body)).field_error(field)
    # A list where an ID goes: Envoy's JSON parser refuses it without naming the field.
    listed = {"follower_id": me, "followee_id": [1, 2]}
    (await call(http, "POST", "/follow", user=alice, json=listed)).expect(400, "INVALID_ARGUMENT")
    unknown = {"follower_id": me, "followee_id": "999999999999999"}
    (await call(http, "POST", "/follow", user=alice, json=unknown)).expect(404, "USER_NOT_FOUND")


async def test_follow_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    (await call(http, "POST", "/follow", user=alice, data=b"follow everyone")).expect(400, "INVALID_ARGUMENT")
    (await call(http, "DELETE", "/follow", user=alice, data=b"[1]")).expect(400, "INVALID_ARGUMENT")


async def test_relationship_with_a_bad_id_is_400(http: aiohttp.ClientSession) -> None:
    alice = await sign_up(http)
    (await call(http, "GET", f"/users/{alice.id}/relationships/bob", user=alice)).field_error("other_user_id")
