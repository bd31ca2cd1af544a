"""Pure tests of what both clients share: JSON parsing, request building, SSE decoding,
the stream's reconnect policy."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from chirp_client import (
    ChirpError,
    NotFound,
    Page,
    RateLimited,
    ReconnectPolicy,
    Session,
    TransportError,
    Tweet,
    Unauthenticated,
    Unavailable,
    User,
)
from chirp_client import _protocol as api
from chirp_client.models import EPOCH, tweet_page


def test_tweet_from_json_parses_ids_timestamps_and_author() -> None:
    tweet = Tweet.from_json(
        {
            "tweet_id": "1234567890123456789",
            "user_id": "7",
            "content": "hi",
            "reply_to": "99",
            "reply_to_user_id": "8",
            "conversation_id": "99",
            "created_at": "2024-05-01T12:00:00.123456789Z",
            "edited_at": "2024-05-01T13:00:00Z",
            "version": 2,
            "author": {"user_id": "7", "handle": "ada", "display_name": "Ada"},
        }
    )

    assert tweet.tweet_id == 1234567890123456789
    assert (tweet.user_id, tweet.reply_to, tweet.reply_to_user_id, tweet.conversation_id) == (7, 99, 8, 99)
    assert tweet.created_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert tweet.edited_at == datetime(2024, 5, 1, 13, tzinfo=UTC)
    assert tweet.version == 2
    assert tweet.author == User(user_id=7, handle="ada", display_name="Ada")


def test_absent_fields_take_their_defaults() -> None:
    tweet = Tweet.from_json({"tweet_id": "5", "content": "x"})

    assert tweet.reply_to is None
    assert tweet.reply_to_user_id is None
    assert tweet.edited_at is None
    assert tweet.author is None
    assert tweet.created_at == EPOCH
    assert tweet.version == 0


def test_timestamps_with_an_offset_are_normalised_to_utc() -> None:
    user = User.from_json({"user_id": "1", "created_at": "2024-05-01T14:00:00+02:00"})

    assert user.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert user.created_at.tzinfo is UTC


def test_malformed_json_is_an_sdk_error_not_a_crash() -> None:
    call = api.get_tweet(1)

    with pytest.raises(ChirpError, match="unexpected answer"):
        call.decode(200, b'{"tweet_id": "1", "content": 5}')
    with pytest.raises(ChirpError, match="not JSON"):
        call.decode(200, b"<html>")


def test_pages_and_sessions_parse() -> None:
    page = tweet_page({"tweets": [{"tweet_id": "2"}, {"tweet_id": "1"}], "next_cursor": "abc"})
    last = tweet_page({})
    session = Session.from_json({"token": "t0k", "user_id": "3", "expires_at": "2030-01-01T00:00:00Z"})

    assert [t.tweet_id for t in page.items] == [2, 1]
    assert (page.next_cursor, page.is_last) == ("abc", False)
    assert last == Page(items=(), next_cursor="")
    assert last.is_last
    assert (session.token, session.user_id) == ("t0k", 3)
    assert session.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_post_tweet_sends_ids_as_strings_and_omits_defaults() -> None:
    plain = api.post_tweet(7, "hello", None, None)
    reply = api.post_tweet(7, "hi", 99, "key-1")

    assert (plain.method, plain.path) == ("POST", "/tweets")
    assert json.loads(plain.encoded_body() or b"") == {"user_id": "7", "content": "hello"}
    assert json.loads(reply.encoded_body() or b"") == {
        "user_id": "7",
        "content": "hi",
        "reply_to": "99",
        "idempotency_key": "key-1",
    }
    assert plain.headers("tok")["Authorization"] == "Bearer tok"
    assert plain.headers(None).get("Authorization") is None
    assert plain.headers(None)["Content-Type"] == "application/json"


def test_urls_follow_the_http_rules() -> None:
    base = "http://127.0.0.1:8080/"

    assert api.home_timeline_page(7, 5, "c/+=").url(base) == (
        "http://127.0.0.1:8080/timeline?user_id=7&limit=5&cursor=c%2F%2B%3D"
    )
    assert api.home_timeline_page(7, None, None).url(base) == "http://127.0.0.1:8080/timeline?user_id=7"
    assert api.relationship(1, 2).url(base) == "http://127.0.0.1:8080/users/1/relationships/2"
    assert api.stream_home_timeline(7, 0).url(base) == "http://127.0.0.1:8080/timeline/stream?user_id=7"
    assert api.stream_home_timeline(7, 42).url(base).endswith("?user_id=7&since_id=42")
    assert api.edit_tweet(3, "x").method == "PATCH"
    assert (api.unfollow(1, 2).method, api.unfollow(1, 2).path) == ("DELETE", "/follow")


def test_ids_must_be_ints() -> None:
    with pytest.raises(TypeError):
        api.get_tweet("12")  # type: ignore[arg-type]


def test_relationship_keeps_both_user_ids() -> None:
    rel = api.relationship(1, 2).decode(200, b'{"following": true}')

    assert (rel.user_id, rel.other_user_id, rel.following, rel.followed_by) == (1, 2, True, False)


def test_an_empty_success_body_is_fine_for_calls_that_return_nothing() -> None:
    assert api.delete_tweet(1).decode(200, b"{}") is None
    assert api.follow(1, 2).decode(204, b"") is None


def test_error_status_raises_from_decode() -> None:
    with pytest.raises(NotFound):
        api.get_tweet(1).decode(404, b'{"code": 5, "message": "tweet 1 not found"}')


def test_sse_decoder_handles_split_chunks_crlf_comments_and_multiline_data() -> None:
    decoder = api.SseDecoder()
    stream = (
        b': keep-alive\r\n\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: x\nid: 3\ndata: two\n\ndata:three\n\n'
    )

    events = [event for index in range(len(stream)) for event in decoder.feed(stream[index : index + 1])]

    assert events == ['{"a":\n1}', "two", "three"]


def test_sse_decoder_waits_for_the_blank_line() -> None:
    decoder = api.SseDecoder()

    assert decoder.feed(b'data: {"tweet": {}}\n') == []
    assert decoder.feed(b"\n") == ['{"tweet": {}}']


def test_stream_event_is_a_tweet_or_raises_the_status_it_carries() -> None:
    tweet = api.stream_event('{"tweet": {"tweet_id": "9", "content": "new"}}')

    assert tweet is not None
    assert (tweet.tweet_id, tweet.content) == (9, "new")
    assert api.stream_event("{}") is None
    with pytest.raises(Unavailable):
        api.stream_event('{"code": 14, "message": "timeline down"}')


def test_reconnect_delays_grow_are_capped_and_respect_retry_after() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=4.0, jitter=False)
    limited = RateLimited(http_status=429, message="slow", retry_after=10.0)

    assert [policy.delay(n) for n in range(6)] == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, limited) == 10.0


def test_reconnect_jitter_stays_within_half_to_full_delay() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=8.0, _random=random.Random(7))

    delays = [policy.delay(3) for _ in range(200)]

    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_only_errors_a_retry_can_fix_are_retried() -> None:
    policy = ReconnectPolicy()

    assert policy.retryable(TransportError("reset"))
    assert policy.retryable(Unavailable(http_status=503, code="UNAVAILABLE", message=""))
    assert policy.retryable(RateLimited(http_status=429, message=""))
    assert not policy.retryable(Unauthenticated(http_status=401, code="UNAUTHENTICATED", message=""))
    assert not policy.retryable(NotFound(http_status=404, code="NOT_FOUND", message=""))


def test_recent_ids_forget_the_oldest() -> None:
    recent = api.RecentIds(size=2)

    assert recent.add(1)
    assert not recent.add(1)
    assert recent.add(2)
    assert recent.add(3)
    assert recent.add(1)  # evicted, so new again


def test_calls_for_the_logged_in_user_need_a_known_user() -> None:
    creds = api.Credentials(token=None, user_id=None)
    assert creds._me() == 0  # the server answers UNAUTHENTICATED

    creds = api.Credentials(token="t", user_id=None)
    with pytest.raises(ValueError, match="user_id"):
        creds._me()
