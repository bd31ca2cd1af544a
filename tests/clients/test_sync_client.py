"""The blocking Client through the real gateway. Each scenario runs in a worker thread
(asyncio.to_thread): the session's event loop is busy running the servers."""

from __future__ import annotations

import asyncio
import time

import pytest
from chirp_client import (
    AlreadyExists,
    Client,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Tweet,
    Unauthenticated,
)

from tests.clients.conftest import PASSWORD
from tests.helpers.rest import new_handle


def signed_up(base_url: str) -> Client:
    client = Client(base_url)
    handle = new_handle("sync")
    client.sign_up(handle, PASSWORD, display_name="Sync User")
    client.log_in(handle, PASSWORD)
    return client


def home_until(client: Client, count: int, limit: int, within: float = 10.0) -> list[Tweet]:
    deadline = time.monotonic() + within
    while True:
        tweets = list(client.home_timeline(limit=limit))
        if len(tweets) >= count or time.monotonic() > deadline:
            return tweets
        time.sleep(0.05)


async def test_sync_sign_up_log_in_and_tweet_lifecycle(base_url: str) -> None:
    def scenario() -> None:
        with Client(base_url) as client:
            handle = new_handle("sync")
            user = client.sign_up(handle, PASSWORD, display_name="Sync User")
            session = client.log_in(handle, PASSWORD)
            assert (session.user_id, client.user_id, client.token) == (
                user.user_id,
                user.user_id,
                session.token,
            )
            assert client.get_user(user.user_id).display_name == "Sync User"

            root = client.post_tweet("sync hello")
            edited = client.edit_tweet(root.tweet_id, "sync hello, edited")
            reply = client.post_tweet("sync reply", reply_to=root.tweet_id)

            assert edited.version == 2
            assert [v.content for v in client.versions(root.tweet_id)] == ["sync hello", "sync hello, edited"]
            assert [t.tweet_id for t in client.replies(root.tweet_id)] == [reply.tweet_id]
            assert [t.tweet_id for t in client.user_tweets(user.user_id, limit=1)] == [
                reply.tweet_id,
                root.tweet_id,
            ]

            client.delete_tweet(root.tweet_id)
            with pytest.raises(NotFound):
                client.get_tweet(root.tweet_id)

    await asyncio.to_thread(scenario)


async def test_sync_follow_and_home_timeline_pages(base_url: str) -> None:
    def scenario() -> None:
        with signed_up(base_url) as ada, signed_up(base_url) as bob:
            assert ada.user_id and bob.user_id
            ada.follow(bob.user_id)
            assert ada.relationship(bob.user_id).following
            assert [u.user_id for u in bob.followers(bob.user_id)] == [ada.user_id]
            posted = [bob.post_tweet(f"bob says {i}") for i in range(5)] + [ada.post_tweet("ada says")]

            tweets = home_until(ada, len(posted), limit=2)

            ids = [t.tweet_id for t in tweets]
            assert ids == sorted((t.tweet_id for t in posted), reverse=True)
            assert len(set(ids)) == len(ids)
            page = ada.home_timeline_page(limit=2)
            assert [t.tweet_id for t in page.items] == ids[:2]
            assert page.next_cursor

            ada.unfollow(bob.user_id)
            assert not ada.relationship(bob.user_id).following
            assert list(ada.following(ada.user_id)) == []

    await asyncio.to_thread(scenario)


async def test_sync_errors_are_typed(base_url: str) -> None:
    def scenario() -> None:
        with signed_up(base_url) as ada, signed_up(base_url) as bob, Client(base_url) as anonymous:
            tweet = ada.post_tweet("ada's")

            with pytest.raises(PermissionDenied):
                bob.edit_tweet(tweet.tweet_id, "bob's now")
            with pytest.raises(PermissionDenied):
                bob.delete_tweet(tweet.tweet_id)
            with pytest.raises(InvalidArgument) as invalid:
                ada.post_tweet("y" * 281)
            assert "content" in invalid.value.message
            with pytest.raises(Unauthenticated):
                anonymous.get_tweet(tweet.tweet_id)
            with pytest.raises(Unauthenticated):
                anonymous.post_tweet("no token")
            with pytest.raises(NotFound):
                ada.get_tweet(2**62 + 1)
            handle = ada.get_user(ada.user_id or 0).handle
            with pytest.raises(AlreadyExists):
                anonymous.sign_up(handle, PASSWORD)

    await asyncio.to_thread(scenario)
