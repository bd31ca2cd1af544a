"""AsyncClient through the real gateway: accounts, tweets, replies, the graph, timelines, errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from chirp_client import (
    AlreadyExists,
    AsyncClient,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Tweet,
    Unauthenticated,
)

from tests.clients.conftest import PASSWORD, NewUser
from tests.helpers.api import eventually
from tests.helpers.rest import new_handle


async def home(client: AsyncClient, limit: int | None = None) -> list[Tweet]:
    return [tweet async for tweet in client.home_timeline(limit=limit)]


async def test_sign_up_then_log_in(base_url: str) -> None:
    handle = new_handle("sdk")
    async with AsyncClient(base_url) as client:
        user = await client.sign_up(handle.upper(), PASSWORD, display_name="Ada Lovelace")
        session = await client.log_in(handle, PASSWORD)

        assert user.user_id > 0
        assert user.handle == handle  # stored lower-case
        assert user.display_name == "Ada Lovelace"
        assert abs(user.created_at - datetime.now(UTC)) < timedelta(minutes=5)
        assert session.user_id == user.user_id
        assert session.token
        assert session.expires_at is not None and session.expires_at > datetime.now(UTC)
        assert (client.token, client.user_id) == (session.token, user.user_id)
        assert await client.get_user(user.user_id) == user


async def test_log_in_with_a_wrong_password_is_unauthenticated(new_user: NewUser, base_url: str) -> None:
    ada = await new_user()
    handle = ada.user.handle

    async with AsyncClient(base_url) as client:
        with pytest.raises(Unauthenticated):
            await client.log_in(handle, "not the password")
        assert client.token is None


async def test_a_taken_handle_is_already_exists(new_user: NewUser, base_url: str) -> None:
    ada = await new_user()
    handle = ada.user.handle

    async with AsyncClient(base_url) as client:
        with pytest.raises(AlreadyExists) as caught:
            await client.sign_up(handle.upper(), PASSWORD)

    assert caught.value.http_status == 409
    assert caught.value.grpc_code == 6


async def test_post_get_edit_versions_delete(new_user: NewUser) -> None:
    ada = await new_user()

    posted = await ada.post_tweet("first draft")
    fetched = await ada.get_tweet(posted.tweet_id)
    edited = await ada.edit_tweet(posted.tweet_id, "second draft")
    edited_again = await ada.edit_tweet(posted.tweet_id, "final")
    history = await ada.versions(posted.tweet_id)

    assert posted.user_id == ada.id
    assert (posted.content, posted.version, posted.edited_at, posted.reply_to) == (
        "first draft",
        1,
        None,
        None,
    )
    assert posted.conversation_id == posted.tweet_id
    assert fetched == posted
    assert (edited.content, edited.version) == ("second draft", 2)
    assert edited.edited_at is not None and edited.edited_at >= posted.created_at
    assert (await ada.get_tweet(posted.tweet_id)).content == "final"
    assert edited_again.version == 3
    assert [(v.version, v.content) for v in history] == [
        (1, "first draft"),
        (2, "second draft"),
        (3, "final"),
    ]

    await ada.delete_tweet(posted.tweet_id)

    with pytest.raises(NotFound) as caught:
        await ada.get_tweet(posted.tweet_id)
    assert caught.value.http_status == 404
    assert caught.value.reason  # an ErrorInfo reason came through the gateway


async def test_the_same_idempotency_key_returns_the_first_tweet(new_user: NewUser) -> None:
    ada = await new_user()
    key = uuid.uuid4().hex

    first = await ada.post_tweet("once", idempotency_key=key)
    again = await ada.post_tweet("once", idempotency_key=key)
    other = await ada.post_tweet("once", idempotency_key=uuid.uuid4().hex)
    with pytest.raises(FailedPrecondition) as reused:
        await ada.post_tweet("something else", idempotency_key=key)

    assert again.tweet_id == first.tweet_id
    assert other.tweet_id != first.tweet_id
    assert reused.value.metadata.get("tweet_id") == str(first.tweet_id)


async def test_replies_page_oldest_first(new_user: NewUser) -> None:
    ada, bob = await new_user(), await new_user()
    root = await ada.post_tweet("root")

    replies = [
        await bob.post_tweet("r1", reply_to=root.tweet_id),
        await ada.post_tweet("r2", reply_to=root.tweet_id),
        await bob.post_tweet("r3", reply_to=root.tweet_id),
    ]
    nested = await ada.post_tweet("r1.1", reply_to=replies[0].tweet_id)
    listed = [tweet async for tweet in ada.replies(root.tweet_id, limit=2)]

    assert [t.tweet_id for t in listed] == [r.tweet_id for r in replies]  # direct replies only
    assert all(t.reply_to == root.tweet_id for t in listed)
    assert replies[0].reply_to_user_id == ada.id
    assert nested.conversation_id == root.tweet_id
    assert nested.reply_to_user_id == bob.id


async def test_a_reply_to_a_missing_tweet_is_not_found(new_user: NewUser) -> None:
    ada = await new_user()
    gone = await ada.post_tweet("soon gone")
    await ada.delete_tweet(gone.tweet_id)

    with pytest.raises(NotFound):
        await ada.post_tweet("hello?", reply_to=gone.tweet_id)


async def test_follow_and_unfollow(new_user: NewUser) -> None:
    ada, bob, cyd = await new_user(), await new_user(), await new_user()

    await ada.follow(bob.id)
    await ada.follow(bob.id)  # following twice is no error
    await cyd.follow(bob.id)
    await bob.follow(ada.id)

    assert (await ada.relationship(bob.id)).following
    assert (await ada.relationship(bob.id)).followed_by
    assert [u.user_id async for u in bob.followers(bob.id, limit=1)] == [cyd.id, ada.id]
    assert [u.user_id async for u in ada.following(ada.id)] == [bob.id]

    await ada.unfollow(bob.id)
    await ada.unfollow(bob.id)  # unfollowing someone not followed is no error

    relation = await ada.relationship(bob.id)
    assert (relation.following, relation.followed_by) == (False, True)
    assert [u.user_id async for u in bob.followers(bob.id)] == [cyd.id]
    assert [u.handle async for u in ada.following(ada.id)] == []


async def test_home_timeline_walks_every_page_without_duplicates(new_user: NewUser) -> None:
    ada, bob, cyd = await new_user(), await new_user(), await new_user()
    await ada.follow(bob.id)
    await ada.follow(cyd.id)
    posted = [await author.post_tweet(f"tweet {i}") for i, author in enumerate([bob, cyd, ada] * 3 + [bob])]

    tweets = await eventually(lambda: home(ada, limit=3), lambda ts: len(ts) >= len(posted))
    first_page = await ada.home_timeline_page(limit=3)

    ids = [t.tweet_id for t in tweets]
    assert len(ids) == len(set(ids)) == 10
    assert ids == sorted((t.tweet_id for t in posted), reverse=True)  # newest first
    assert all(t.author is not None and t.author.user_id == t.user_id for t in tweets)
    assert {t.author.handle for t in tweets if t.author} == {
        ada.user.handle,
        bob.user.handle,
        cyd.user.handle,
    }
    assert [t.tweet_id for t in first_page.items] == ids[:3]
    assert first_page.next_cursor
    second_page = await ada.home_timeline_page(limit=3, cursor=first_page.next_cursor)
    assert [t.tweet_id for t in second_page.items] == ids[3:6]


async def test_home_timeline_shows_edits_and_drops_deleted_tweets(new_user: NewUser) -> None:
    ada = await new_user()
    kept = await ada.post_tweet("typo")
    dropped = await ada.post_tweet("oops")
    await ada.edit_tweet(kept.tweet_id, "fixed")
    await ada.delete_tweet(dropped.tweet_id)

    tweets = await eventually(lambda: home(ada), lambda ts: [t.content for t in ts] == ["fixed"])

    assert tweets[0].tweet_id == kept.tweet_id
    assert tweets[0].version == 2


async def test_user_tweets_pages_through_one_authors_tweets(new_user: NewUser) -> None:
    ada, bob = await new_user(), await new_user()
    mine = [await ada.post_tweet(f"mine {i}") for i in range(5)]
    await bob.post_tweet("not ada's")

    listed = [t async for t in bob.user_tweets(ada.id, limit=2)]

    assert [t.tweet_id for t in listed] == [t.tweet_id for t in reversed(mine)]


async def test_acting_on_anothers_tweet_is_permission_denied(new_user: NewUser) -> None:
    ada, bob = await new_user(), await new_user()
    tweet = await ada.post_tweet("mine")

    with pytest.raises(PermissionDenied) as edit:
        await bob.edit_tweet(tweet.tweet_id, "now mine")
    with pytest.raises(PermissionDenied) as delete:
        await bob.delete_tweet(tweet.tweet_id)

    assert edit.value.http_status == delete.value.http_status == 403
    assert (await ada.get_tweet(tweet.tweet_id)).content == "mine"


async def test_acting_as_another_user_is_permission_denied(new_user: NewUser, base_url: str) -> None:
    ada, bob = await new_user(), await new_user()
    as_bob = AsyncClient(base_url, ada.token, user_id=bob.id)  # ada's token, bob's ID

    try:
        with pytest.raises(PermissionDenied):
            await as_bob.post_tweet("I am bob")
        with pytest.raises(PermissionDenied):
            await as_bob.home_timeline_page()
    finally:
        await as_bob.close()


async def test_bad_input_is_invalid_argument_naming_the_field(new_user: NewUser) -> None:
    ada = await new_user()

    with pytest.raises(InvalidArgument) as too_long:
        await ada.post_tweet("x" * 281)
    with pytest.raises(InvalidArgument) as empty:
        await ada.post_tweet("")
    with pytest.raises(InvalidArgument) as negative:
        await ada.home_timeline_page(limit=-1)
    with pytest.raises(InvalidArgument) as bad_cursor:
        await ada.home_timeline_page(cursor="not-a-cursor!")

    assert "content" in too_long.value.message
    assert too_long.value.http_status == 400
    assert too_long.value.grpc_code == 3
    assert "content" in empty.value.message
    assert "limit" in negative.value.message
    assert "cursor" in bad_cursor.value.message


async def test_no_token_is_unauthenticated(new_user: NewUser, base_url: str) -> None:
    ada = await new_user()
    tweet = await ada.post_tweet("hello")

    async with AsyncClient(base_url) as anonymous:
        with pytest.raises(Unauthenticated) as get:
            await anonymous.get_tweet(tweet.tweet_id)
        with pytest.raises(Unauthenticated):
            await anonymous.post_tweet("who am I")
        with pytest.raises(Unauthenticated):
            await anonymous.home_timeline_page()

    assert get.value.http_status == 401
    assert get.value.grpc_code == 16


async def test_a_forged_token_is_unauthenticated(new_user: NewUser, base_url: str) -> None:
    ada = await new_user()

    async with AsyncClient(base_url, "forged-" + uuid.uuid4().hex, user_id=ada.id) as forger:
        with pytest.raises(Unauthenticated):
            await forger.post_tweet("not really ada")


async def test_missing_things_are_not_found(new_user: NewUser) -> None:
    ada = await new_user()
    missing = 2**62 + 12345

    with pytest.raises(NotFound):
        await ada.get_tweet(missing)
    with pytest.raises(NotFound):
        await ada.get_user(missing)
    with pytest.raises(NotFound):
        await ada.edit_tweet(missing, "x")
