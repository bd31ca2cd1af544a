"""CreateTweet with media_ids: every check an upload must pass before a tweet shows it."""

from __future__ import annotations

import asyncio

import grpc
import psycopg

from chirp.tweets.v1 import tweets_pb2 as pb
from tests.helpers import media_files as files
from tests.helpers.api import Api, as_user, error_reason, rpc_error
from tests.helpers.media import grant, tweet_with_media, upload
from tweets_svc.media.stores.local import LocalMediaStore

PNG = files.png(640, 480)


async def test_a_tweet_carries_its_media_in_order_with_urls_types_sizes_and_dimensions(
    api: Api, local_store: LocalMediaStore
) -> None:
    author = await api.new_user()
    uploads = [
        (files.png(640, 480), "image/png", (640, 480)),
        (files.jpeg(1024, 768, exif_bytes=70_000), "image/jpeg", (1024, 768)),
        (files.webp_lossless(300, 200), "image/webp", (300, 200)),
        (files.mp4(size=50_000), "video/mp4", (0, 0)),
    ]
    media_ids = [await upload(api, author.user_id, data, kind) for data, kind, _ in uploads]

    tweet = await tweet_with_media(api, author.user_id, media_ids, "four at once")

    assert [m.media_id for m in tweet.media] == media_ids
    for media, (data, kind, (width, height)) in zip(tweet.media, uploads, strict=True):
        assert (media.content_type, media.size_bytes) == (kind, len(data))
        assert (media.width, media.height) == (width, height)
        assert media.url.startswith(local_store.upload_url)
        key = media.url.removeprefix(local_store.upload_url)
        assert local_store.path_of(key).read_bytes() == data
    fetched = await api.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet.tweet_id))
    assert list(fetched.media) == list(tweet.media)


async def test_media_without_text_is_a_tweet_but_no_media_needs_text(api: Api) -> None:
    author = await api.new_user()
    tweet = await tweet_with_media(api, author.user_id, [await upload(api, author.user_id, PNG, "image/png")])
    assert tweet.content == "" and len(tweet.media) == 1

    error = await rpc_error(tweet_with_media(api, author.user_id, []))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "content" in (error.details() or "")


async def test_someone_elses_media_is_refused(api: Api) -> None:
    owner, thief = await api.new_user(), await api.new_user()
    media_id = await upload(api, owner.user_id, PNG, "image/png")
    error = await rpc_error(tweet_with_media(api, thief.user_id, [media_id]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "MEDIA_NOT_OWNED"
    # The owner can still use it.
    assert len((await tweet_with_media(api, owner.user_id, [media_id])).media) == 1


async def test_an_unknown_media_id_is_not_found(api: Api) -> None:
    author = await api.new_user()
    error = await rpc_error(tweet_with_media(api, author.user_id, [123_456_789]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(error) == "MEDIA_NOT_FOUND"


async def test_media_cannot_be_attached_twice(api: Api) -> None:
    author = await api.new_user()
    media_id = await upload(api, author.user_id, PNG, "image/png")
    first = await tweet_with_media(api, author.user_id, [media_id])
    error = await rpc_error(tweet_with_media(api, author.user_id, [media_id], "again"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "MEDIA_ALREADY_ATTACHED"
    assert [m.media_id for m in first.media] == [media_id]


async def test_two_tweets_racing_for_one_upload_get_it_once(api: Api) -> None:
    author = await api.new_user()
    media_id = await upload(api, author.user_id, PNG, "image/png")
    outcomes = await asyncio.gather(
        *(tweet_with_media(api, author.user_id, [media_id], f"race {i}") for i in range(6)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, pb.Tweet)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 5, outcomes
    assert {error_reason(e) for e in lost} == {"MEDIA_ALREADY_ATTACHED"}


async def test_more_than_four_media_is_invalid(api: Api) -> None:
    author = await api.new_user()
    media_ids = [await upload(api, author.user_id, PNG, "image/png") for _ in range(5)]
    error = await rpc_error(tweet_with_media(api, author.user_id, media_ids))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "media_ids" in (error.details() or "")
    # Nothing was bound: four of them still make a tweet.
    assert len((await tweet_with_media(api, author.user_id, media_ids[:4])).media) == 4


async def test_a_repeated_media_id_is_invalid(api: Api) -> None:
    author = await api.new_user()
    media_id = await upload(api, author.user_id, PNG, "image/png")
    error = await rpc_error(tweet_with_media(api, author.user_id, [media_id, media_id]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "media_ids" in (error.details() or "")


async def test_a_png_declared_as_a_jpeg_is_refused(api: Api) -> None:
    author = await api.new_user()
    # The store holds the client to the declared Content-Type, not to what the bytes are.
    media_id = await upload(api, author.user_id, PNG, "image/jpeg")
    error = await rpc_error(tweet_with_media(api, author.user_id, [media_id]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "MEDIA_TYPE_MISMATCH"
    assert "image/png" in (error.details() or "")


async def test_a_file_that_is_no_media_at_all_is_refused(api: Api) -> None:
    author = await api.new_user()
    media_id = await upload(api, author.user_id, b"<svg onload='alert(1)'/>", "image/gif")
    error = await rpc_error(tweet_with_media(api, author.user_id, [media_id]))
    assert error_reason(error) == "MEDIA_TYPE_MISMATCH"


async def test_a_broken_image_header_is_refused(api: Api) -> None:
    author = await api.new_user()
    media_id = await upload(api, author.user_id, b"\xff\xd8\xff\xda" + b"\0" * 100, "image/jpeg")
    error = await rpc_error(tweet_with_media(api, author.user_id, [media_id]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "MEDIA_INVALID"


async def test_an_upload_that_never_happened_is_refused(api: Api) -> None:
    author = await api.new_user()
    granted = await grant(api, author.user_id, "image/png", len(PNG))
    error = await rpc_error(tweet_with_media(api, author.user_id, [granted.media_id]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "MEDIA_NOT_UPLOADED"


async def test_an_object_of_another_size_than_declared_is_refused(
    api: Api, local_store: LocalMediaStore
) -> None:
    """The grant's policy already holds an upload to the declared size; a store that let a
    different size through would still be caught here."""
    author = await api.new_user()
    granted = await grant(api, author.user_id, "image/png", len(PNG) + 10)
    path = local_store.path_of(granted.upload.fields["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    error = await rpc_error(tweet_with_media(api, author.user_id, [granted.media_id]))
    assert error_reason(error) == "MEDIA_SIZE_MISMATCH"


async def test_one_bad_media_id_binds_none_of_the_others(api: Api) -> None:
    author = await api.new_user()
    good = await upload(api, author.user_id, PNG, "image/png")
    missing = (await grant(api, author.user_id, "image/png", 100)).media_id
    error = await rpc_error(tweet_with_media(api, author.user_id, [good, missing]))
    assert error_reason(error) == "MEDIA_NOT_UPLOADED"
    assert [m.media_id for m in (await tweet_with_media(api, author.user_id, [good])).media] == [good]


async def test_an_idempotent_retry_returns_the_tweet_and_its_media(api: Api) -> None:
    author = await api.new_user()
    media_id = await upload(api, author.user_id, PNG, "image/png")
    first = await tweet_with_media(api, author.user_id, [media_id], "once", idempotency_key="k1")
    again = await tweet_with_media(api, author.user_id, [media_id], "once", idempotency_key="k1")
    assert again == first
    other = await upload(api, author.user_id, PNG, "image/png")
    error = await rpc_error(tweet_with_media(api, author.user_id, [other], "once", idempotency_key="k1"))
    assert error_reason(error) == "IDEMPOTENCY_KEY_REUSED"


async def test_media_come_along_in_replies_batches_and_author_lists(api: Api) -> None:
    author = await api.new_user()
    parent = await tweet_with_media(api, author.user_id, [], "parent")
    reply = await tweet_with_media(
        api, author.user_id, [await upload(api, author.user_id, PNG, "image/png")], reply_to=parent.tweet_id
    )
    replies = await api.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=parent.tweet_id))
    batch = await api.tweets.BatchGetTweets(pb.BatchGetTweetsRequest(tweet_ids=[reply.tweet_id]))
    by_author = await api.tweets.ListTweetsByAuthors(
        pb.ListTweetsByAuthorsRequest(author_ids=[author.user_id])
    )
    for listed in (replies.tweets[0], batch.tweets[0], by_author.tweets[0]):
        assert list(listed.media) == list(reply.media)


async def test_an_edit_keeps_the_media(api: Api, database_url: str) -> None:
    author = await api.new_user()
    tweet = await tweet_with_media(api, author.user_id, [await upload(api, author.user_id, PNG, "image/png")])
    edited = await api.tweets.EditTweet(
        pb.EditTweetRequest(tweet_id=tweet.tweet_id, content="now with words"),
        metadata=as_user(author.user_id),
    )
    assert edited.content == "now with words"
    assert list(edited.media) == list(tweet.media)
    with psycopg.connect(database_url) as conn:
        [(state,)] = conn.execute(
            "SELECT state FROM tweets.media WHERE media_id = %s", (tweet.media[0].media_id,)
        ).fetchall()
    assert state == "attached"
