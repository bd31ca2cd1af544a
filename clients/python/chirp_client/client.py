"""The clients: `Client` (blocking, standard library only) and `AsyncClient` (asyncio, aiohttp).

Both have the same methods with the same arguments; the requests and the parsing of the
answers come from `chirp_client._protocol`, so the two differ only in how bytes move.
Calls made on the user's behalf (posting, following, the home timeline) act as the
logged-in user: call `log_in` first, or pass both `token` and `user_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Self, TypeVar

import aiohttp

from chirp_client import _protocol as api
from chirp_client._protocol import Call, Credentials, RecentIds, ReconnectPolicy, SseDecoder, StreamAttempt
from chirp_client.errors import ChirpApiError, ChirpError, TransportError, error_from_response
from chirp_client.models import Page, Relationship, Session, Tweet, TweetVersion, User

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


class Client(Credentials):
    """A blocking client. `timeout` is in seconds, per request.

    `limit` on the listing methods is the page size asked of the server (it defaults to
    20 and caps at 100); the iterators fetch the next page only when the current one is
    used up, so stop early with `itertools.islice` or `break`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        user_id: int | None = None,
        refresh_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(token, user_id, refresh_token)
        self.base_url = base_url
        self.timeout = timeout
        self._opener = urllib.request.build_opener()
        self._refreshing = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (every request has its own connection); here for symmetry."""

    def _send(self, call: Call[T]) -> T:
        """Send `call`, refreshing the access token first when it is about to expire, and once
        more (then sending again) when the server refuses the token."""
        if self.should_refresh(call):
            self._refresh_from(self.token)
        sent_with = self.token
        try:
            return self._send_once(call)
        except ChirpError as error:
            if not self.can_retry(call, error):
                raise
        self._refresh_from(sent_with)
        return self._send_once(call)

    def _refresh_from(self, stale: str | None) -> None:
        """Exchange the refresh token, unless another thread already replaced the `stale` token."""
        with self._refreshing:
            if self.token != stale or self.refresh_token is None:
                return
            try:
                self._remember(self._send_once(api.refresh_session(self.refresh_token)))
            except ChirpApiError:
                self._forget()
                raise

    def _send_once(self, call: Call[T]) -> T:
        request = urllib.request.Request(
            call.url(self.base_url),
            data=call.encoded_body(),
            headers=call.headers(self.token),
            method=call.method,
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return call.decode(response.status, response.read())
        except urllib.error.HTTPError as error:
            with error:
                body = error.read()
                raise error_from_response(
                    error.code, body, retry_after=error.headers.get("Retry-After"), http_reason=error.reason
                ) from None
        except (urllib.error.URLError, OSError) as error:
            raise TransportError(f"{call.method} {call.url(self.base_url)}: {error}") from error

    def _pages(self, page: Callable[[str], Call[Page[T]]]) -> Iterator[T]:
        cursor = ""
        while True:
            current = self._send(page(cursor))
            yield from current.items
            if current.is_last:
                return
            cursor = current.next_cursor

    def sign_up(self, handle: str, password: str, display_name: str = "") -> User:
        """Create an account. A taken handle raises AlreadyExists. Does not log in."""
        return self._send(api.sign_up(handle, password, display_name))

    def log_in(self, handle: str, password: str) -> Session:
        """Open a session; later calls use its token and act as its user, and refresh it."""
        return self._remember(self._send(api.log_in(handle, password)))

    def refresh(self) -> Session:
        """Exchange the refresh token for new tokens now (calls do it by themselves when needed)."""
        if self.refresh_token is None:
            raise ValueError("no refresh token: log in first")
        with self._refreshing:
            return self._remember(self._send_once(api.refresh_session(self.refresh_token)))

    def log_out(self) -> None:
        """End the session: its refresh token stops working, and the client forgets both tokens.
        (The access token itself works until it expires, a few minutes at most.)"""
        try:
            self._send(api.log_out())
        finally:
            self._forget()

    def get_user(self, user_id: int) -> User:
        return self._send(api.get_user(user_id))

    def post_tweet(
        self,
        content: str,
        reply_to: int | None = None,
        idempotency_key: str | None = None,
        media_ids: Sequence[int] = (),
    ) -> Tweet:
        """Post as the logged-in user, with the media uploaded by `upload_media`. Posting again
        with the same `idempotency_key` returns the first tweet instead of a duplicate, so a post
        is safe to retry."""
        return self._send(api.post_tweet(self._me(), content, reply_to, idempotency_key, media_ids))

    def upload_media(self, data: bytes, content_type: str) -> int:
        """Upload an image or a video straight to the media store; returns the media ID for
        `post_tweet`. A type or size the API does not take raises InvalidArgument."""
        grant = self._send(api.create_media_upload(content_type, len(data)))
        self._send(api.upload_media(grant, data, content_type))
        return grant.media_id

    def get_tweet(self, tweet_id: int) -> Tweet:
        return self._send(api.get_tweet(tweet_id))

    def edit_tweet(self, tweet_id: int, content: str) -> Tweet:
        """Replace the content of one's own tweet; the tweet comes back at its new version."""
        return self._send(api.edit_tweet(tweet_id, content))

    def delete_tweet(self, tweet_id: int) -> None:
        self._send(api.delete_tweet(tweet_id))

    def replies(self, tweet_id: int, limit: int | None = None) -> Iterator[Tweet]:
        """The direct replies to a tweet, oldest first."""
        return self._pages(lambda cursor: api.replies_page(tweet_id, limit, cursor))

    def versions(self, tweet_id: int) -> list[TweetVersion]:
        """Every version of a tweet, oldest first; the last is the current content."""
        return self._send(api.versions(tweet_id))

    def user_tweets(self, user_id: int, limit: int | None = None) -> Iterator[Tweet]:
        """The tweets a user wrote, newest first."""
        return self._pages(lambda cursor: api.user_tweets_page(user_id, limit, cursor))

    def follow(self, followee_id: int) -> None:
        """Follow someone as the logged-in user; following twice is no error."""
        self._send(api.follow(self._me(), followee_id))

    def unfollow(self, followee_id: int) -> None:
        self._send(api.unfollow(self._me(), followee_id))

    def followers(self, user_id: int, limit: int | None = None) -> Iterator[User]:
        """The users following `user_id`, newest edge first."""
        return self._pages(lambda cursor: api.followers_page(user_id, limit, cursor))

    def following(self, user_id: int, limit: int | None = None) -> Iterator[User]:
        """The users `user_id` follows, newest edge first."""
        return self._pages(lambda cursor: api.following_page(user_id, limit, cursor))

    def relationship(self, other_user_id: int) -> Relationship:
        """Whether the logged-in user and `other_user_id` follow each other."""
        return self._send(api.relationship(self._me(), other_user_id))

    def home_timeline(self, limit: int | None = None) -> Iterator[Tweet]:
        """The logged-in user's home timeline, newest first, following the cursor page by page."""
        me = self._me()
        return self._pages(lambda cursor: api.home_timeline_page(me, limit, cursor))

    def home_timeline_page(self, limit: int | None = None, cursor: str | None = None) -> Page[Tweet]:
        """One page of the home timeline; pass its `next_cursor` to get the next one."""
        return self._send(api.home_timeline_page(self._me(), limit, cursor))


class AsyncClient(Credentials):
    """The asyncio client, with the methods of `Client` as coroutines and async iterators,
    plus `stream_home_timeline`. Use it as `async with AsyncClient(url) as client:` or call
    `close()`; an aiohttp `session` passed in is left open for its owner."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        user_id: int | None = None,
        refresh_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(token, user_id, refresh_token)
        self._refreshing = asyncio.Lock()
        self.base_url = base_url
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that will run the requests.
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _send(self, call: Call[T]) -> T:
        """Send `call`, refreshing the access token first when it is about to expire, and once
        more (then sending again) when the server refuses the token."""
        if self.should_refresh(call):
            await self._refresh_from(self.token)
        sent_with = self.token
        try:
            return await self._send_once(call)
        except ChirpError as error:
            if not self.can_retry(call, error):
                raise
        await self._refresh_from(sent_with)
        return await self._send_once(call)

    async def _refresh_from(self, stale: str | None) -> None:
        """Exchange the refresh token, unless another task already replaced the `stale` token:
        concurrent calls that all find the token expired share one refresh."""
        async with self._refreshing:
            if self.token != stale or self.refresh_token is None:
                return
            try:
                self._remember(await self._send_once(api.refresh_session(self.refresh_token)))
            except ChirpApiError:
                self._forget()
                raise

    async def _send_once(self, call: Call[T]) -> T:
        url = call.url(self.base_url)
        try:
            async with self._http().request(
                call.method,
                url,
                data=call.encoded_body(),
                headers=call.headers(self.token),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransportError(f"{call.method} {url}: {error!r}") from error
        return call.decode(
            response.status,
            body,
            retry_after=response.headers.get("Retry-After"),
            reason=response.reason or "",
        )

    async def _pages(self, page: Callable[[str], Call[Page[T]]]) -> AsyncIterator[T]:
        cursor = ""
        while True:
            current = await self._send(page(cursor))
            for item in current.items:
                yield item
            if current.is_last:
                return
            cursor = current.next_cursor

    async def sign_up(self, handle: str, password: str, display_name: str = "") -> User:
        return await self._send(api.sign_up(handle, password, display_name))

    async def log_in(self, handle: str, password: str) -> Session:
        return self._remember(await self._send(api.log_in(handle, password)))

    async def refresh(self) -> Session:
        if self.refresh_token is None:
            raise ValueError("no refresh token: log in first")
        async with self._refreshing:
            return self._remember(await self._send_once(api.refresh_session(self.refresh_token)))

    async def log_out(self) -> None:
        try:
            await self._send(api.log_out())
        finally:
            self._forget()

    async def get_user(self, user_id: int) -> User:
        return await self._send(api.get_user(user_id))

    async def post_tweet(
        self,
        content: str,
        reply_to: int | None = None,
        idempotency_key: str | None = None,
        media_ids: Sequence[int] = (),
    ) -> Tweet:
        return await self._send(api.post_tweet(self._me(), content, reply_to, idempotency_key, media_ids))

    async def upload_media(self, data: bytes, content_type: str) -> int:
        grant = await self._send(api.create_media_upload(content_type, len(data)))
        await self._send(api.upload_media(grant, data, content_type))
        return grant.media_id

    async def get_tweet(self, tweet_id: int) -> Tweet:
        return await self._send(api.get_tweet(tweet_id))

    async def edit_tweet(self, tweet_id: int, content: str) -> Tweet:
        return await self._send(api.edit_tweet(tweet_id, content))

    async def delete_tweet(self, tweet_id: int) -> None:
        await self._send(api.delete_tweet(tweet_id))

    def replies(self, tweet_id: int, limit: int | None = None) -> AsyncIterator[Tweet]:
        return self._pages(lambda cursor: api.replies_page(tweet_id, limit, cursor))

    async def versions(self, tweet_id: int) -> list[TweetVersion]:
        return await self._send(api.versions(tweet_id))

    def user_tweets(self, user_id: int, limit: int | None = None) -> AsyncIterator[Tweet]:
        return self._pages(lambda cursor: api.user_tweets_page(user_id, limit, cursor))

    async def follow(self, followee_id: int) -> None:
        await self._send(api.follow(self._me(), followee_id))

    async def unfollow(self, followee_id: int) -> None:
        await self._send(api.unfollow(self._me(), followee_id))

    def followers(self, user_id: int, limit: int | None = None) -> AsyncIterator[User]:
        return self._pages(lambda cursor: api.followers_page(user_id, limit, cursor))

    def following(self, user_id: int, limit: int | None = None) -> AsyncIterator[User]:
        return self._pages(lambda cursor: api.following_page(user_id, limit, cursor))

    async def relationship(self, other_user_id: int) -> Relationship:
        return await self._send(api.relationship(self._me(), other_user_id))

    def home_timeline(self, limit: int | None = None) -> AsyncIterator[Tweet]:
        me = self._me()
        return self._pages(lambda cursor: api.home_timeline_page(me, limit, cursor))

    async def home_timeline_page(self, limit: int | None = None, cursor: str | None = None) -> Page[Tweet]:
        return await self._send(api.home_timeline_page(self._me(), limit, cursor))

    async def stream_home_timeline(
        self, since_id: int | None = None, *, reconnect: ReconnectPolicy | None = None
    ) -> AsyncIterator[Tweet]:
        """The logged-in user's new home-timeline tweets as they arrive, oldest first, forever.

        With `since_id`, the tweets after that one come first. A dropped connection is
        reopened (see `ReconnectPolicy`) from the newest tweet seen, so none is missed and
        none is yielded twice. Errors a retry cannot fix are raised, as is the last error
        once the policy gives up. Leave the loop with `break`; the connection is closed.
        """
        policy = reconnect or ReconnectPolicy()
        me = self._me()
        last_seen = since_id or 0
        seen = RecentIds()
        failures = 0
        refreshed_for_401 = False
        while True:
            attempt = StreamAttempt()
            failure: ChirpError | None = None
            call = api.stream_home_timeline(me, last_seen)
            if self.should_refresh(call):
                await self._refresh_from(self.token)
            sent_with = self.token
            connection = self._stream_once(call, policy, attempt)
            try:
                async with contextlib.aclosing(connection):
                    async for tweet in connection:
                        refreshed_for_401 = False
                        if seen.add(tweet.tweet_id):
                            last_seen = max(last_seen, tweet.tweet_id)
                            yield tweet
            except ChirpError as error:
                if self.can_retry(call, error) and not refreshed_for_401:
                    refreshed_for_401 = True
                    await self._refresh_from(sent_with)
                    continue
                if not policy.retryable(error):
                    raise
                failure = error
            if attempt.stable(policy):
                failures = 0
            else:
                failures += 1
                if failures >= policy.max_failures:
                    raise failure or TransportError("the stream keeps ending as soon as it opens")
            await asyncio.sleep(policy.delay(failures, failure))

    async def _stream_once(
        self, call: Call[None], policy: ReconnectPolicy, attempt: StreamAttempt
    ) -> AsyncGenerator[Tweet, None]:
        """The tweets of one connection to the stream, until the server or the network ends it."""
        url = call.url(self.base_url)
        try:
            async with self._http().get(
                url,
                headers={**call.headers(self.token), **api.STREAM_HEADERS},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout, sock_read=policy.idle_timeout
                ),
            ) as response:
                if response.status >= 400:
                    raise error_from_response(
                        response.status,
                        await response.read(),
                        retry_after=response.headers.get("Retry-After"),
                        http_reason=response.reason or "",
                    )
                attempt.accepted()
                decoder = SseDecoder()
                async for chunk in response.content.iter_any():
                    for data in decoder.feed(chunk):
                        tweet = api.stream_event(data)
                        if tweet is not None:
                            attempt.delivered = True
                            yield tweet
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransportError(f"GET {url}: {error!r}") from error
