"""What the sync and async clients share, with no I/O: each API call as a `Call` (method,
path, query, JSON body, and how to parse the answer), the request headers, decoding an
answer or its error, the server-sent-events decoder and the stream's reconnect policy.

The clients only move bytes: `Client` with urllib, `AsyncClient` with aiohttp.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from chirp_client.errors import (
    ChirpApiError,
    ChirpError,
    RateLimited,
    TransportError,
    Unauthenticated,
    error_from_response,
    error_from_status,
)
from chirp_client.models import (
    JsonObject,
    MediaUploadGrant,
    Page,
    Relationship,
    Session,
    Tweet,
    TweetVersion,
    User,
    tweet_page,
    tweet_versions,
    user_page,
)

T = TypeVar("T")

USER_AGENT = "chirp-client-python"


def _nothing(_: JsonObject) -> None:
    return None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[JsonObject], T]
    query: tuple[tuple[str, str], ...] = ()
    body: Mapping[str, object] | None = None
    #: A body sent as it is, with its Content-Type, to an absolute URL outside the API (the media
    #: store): no bearer token goes with it, and the answer is not read.
    form: tuple[bytes, str] | None = None
    #: Sign-up, log-in and refresh: no access token needed, so none is refreshed for it.
    public: bool = False

    @property
    def authenticated(self) -> bool:
        return not self.public and self.form is None

    def url(self, base_url: str) -> str:
        if self.form is not None:
            return self.path
        url = base_url.rstrip("/") + self.path
        return f"{url}?{urlencode(self.query)}" if self.query else url

    def encoded_body(self) -> bytes | None:
        if self.form is not None:
            return self.form[0]
        if self.body is None:
            return None
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()

    def headers(self, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.form is not None:
            headers["Content-Type"] = self.form[1]
            return headers
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def decode(self, http_status: int, body: bytes, *, retry_after: str | None = None, reason: str = "") -> T:
        """The parsed answer; a ChirpApiError for an error status."""
        if http_status >= 400:
            raise error_from_response(http_status, body, retry_after=retry_after, http_reason=reason)
        if self.form is not None:
            return self.parse({})
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError as error:
            raise ChirpError(f"{self.method} {self.path}: the answer is not JSON") from error
        if not isinstance(data, dict):
            raise ChirpError(f"{self.method} {self.path}: the answer is not a JSON object")
        try:
            return self.parse(data)
        except (ValueError, TypeError) as error:
            raise ChirpError(f"{self.method} {self.path}: unexpected answer: {error}") from error


def _id(value: int) -> str:
    """int64 values go out as JSON strings, the proto3 JSON form that never loses precision."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an ID must be an int, not {type(value).__name__}")
    return str(value)


def _paging(limit: int | None, cursor: str | None) -> tuple[tuple[str, str], ...]:
    query: list[tuple[str, str]] = []
    if limit is not None:
        query.append(("limit", str(limit)))
    if cursor:
        query.append(("cursor", cursor))
    return tuple(query)


# The public REST API, one function per call; paths and fields follow the google.api.http rules.


def sign_up(handle: str, password: str, display_name: str) -> Call[User]:
    body = {"handle": handle, "password": password, "display_name": display_name}
    return Call("POST", "/users", User.from_json, body=body, public=True)


def log_in(handle: str, password: str) -> Call[Session]:
    body = {"handle": handle, "password": password}
    return Call("POST", "/sessions", Session.from_json, body=body, public=True)


def refresh_session(refresh_token: str) -> Call[Session]:
    body = {"refresh_token": refresh_token}
    return Call("POST", "/sessions/refresh", Session.from_json, body=body, public=True)


def log_out() -> Call[None]:
    return Call("DELETE", "/sessions", _nothing)


def get_user(user_id: int) -> Call[User]:
    return Call("GET", f"/users/{_id(user_id)}", User.from_json)


def post_tweet(
    user_id: int,
    content: str,
    reply_to: int | None,
    idempotency_key: str | None,
    media_ids: Sequence[int] = (),
) -> Call[Tweet]:
    body: dict[str, object] = {"user_id": _id(user_id), "content": content}
    if reply_to is not None:
        body["reply_to"] = _id(reply_to)
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if media_ids:
        body["media_ids"] = [_id(media_id) for media_id in media_ids]
    return Call("POST", "/tweets", Tweet.from_json, body=body)


def create_media_upload(content_type: str, size_bytes: int) -> Call[MediaUploadGrant]:
    body = {"content_type": content_type, "size_bytes": str(size_bytes)}
    return Call("POST", "/media", MediaUploadGrant.from_json, body=body)


def upload_media(grant: MediaUploadGrant, data: bytes, content_type: str) -> Call[None]:
    """The file as a multipart/form-data POST to the grant's URL: its fields, then the file."""
    boundary = f"chirp-{secrets.token_hex(16)}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in grant.fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="upload"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    form = (b"".join(parts), f"multipart/form-data; boundary={boundary}")
    return Call("POST", grant.url, _nothing, form=form)


def get_tweet(tweet_id: int) -> Call[Tweet]:
    return Call("GET", f"/tweets/{_id(tweet_id)}", Tweet.from_json)


def edit_tweet(tweet_id: int, content: str) -> Call[Tweet]:
    return Call("PATCH", f"/tweets/{_id(tweet_id)}", Tweet.from_json, body={"content": content})


def delete_tweet(tweet_id: int) -> Call[None]:
    return Call("DELETE", f"/tweets/{_id(tweet_id)}", _nothing)


def replies_page(tweet_id: int, limit: int | None, cursor: str | None) -> Call[Page[Tweet]]:
    return Call("GET", f"/tweets/{_id(tweet_id)}/replies", tweet_page, query=_paging(limit, cursor))


def versions(tweet_id: int) -> Call[list[TweetVersion]]:
    return Call("GET", f"/tweets/{_id(tweet_id)}/versions", tweet_versions)


def user_tweets_page(user_id: int, limit: int | None, cursor: str | None) -> Call[Page[Tweet]]:
    return Call("GET", f"/users/{_id(user_id)}/tweets", tweet_page, query=_paging(limit, cursor))


def follow(follower_id: int, followee_id: int) -> Call[None]:
    body = {"follower_id": _id(follower_id), "followee_id": _id(followee_id)}
    return Call("POST", "/follow", _nothing, body=body)


def unfollow(follower_id: int, followee_id: int) -> Call[None]:
    body = {"follower_id": _id(follower_id), "followee_id": _id(followee_id)}
    return Call("DELETE", "/follow", _nothing, body=body)


def followers_page(user_id: int, limit: int | None, cursor: str | None) -> Call[Page[User]]:
    return Call("GET", f"/users/{_id(user_id)}/followers", user_page, query=_paging(limit, cursor))


def following_page(user_id: int, limit: int | None, cursor: str | None) -> Call[Page[User]]:
    return Call("GET", f"/users/{_id(user_id)}/following", user_page, query=_paging(limit, cursor))


def relationship(user_id: int, other_user_id: int) -> Call[Relationship]:
    def parse(data: JsonObject) -> Relationship:
        return Relationship.from_json(data, user_id=user_id, other_user_id=other_user_id)

    return Call("GET", f"/users/{_id(user_id)}/relationships/{_id(other_user_id)}", parse)


def home_timeline_page(user_id: int, limit: int | None, cursor: str | None) -> Call[Page[Tweet]]:
    query = (("user_id", _id(user_id)), *_paging(limit, cursor))
    return Call("GET", "/timeline", tweet_page, query=query)


def stream_home_timeline(user_id: int, since_id: int) -> Call[None]:
    """The SSE request; its events are read with `SseDecoder` and `stream_event`."""
    query = [("user_id", _id(user_id))]
    if since_id:
        query.append(("since_id", _id(since_id)))
    return Call("GET", "/timeline/stream", _nothing, query=tuple(query))


STREAM_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}


# An access token is refreshed this long before it expires (at most a fifth of its lifetime).
REFRESH_MARGIN_SECONDS = 30.0


class Credentials:
    """The login state both clients keep: the access token, the refresh token and whose they are.

    The clients refresh by themselves: before a call once the access token is about to expire
    (`should_refresh`), and once after a call the server refused as UNAUTHENTICATED (`can_retry`).
    A refresh replaces both tokens; the refresh token is single-use, so the clients never send two
    refreshes with one token at once (the server would take the second for a stolen copy and end
    the session).
    """

    def __init__(self, token: str | None, user_id: int | None, refresh_token: str | None = None) -> None:
        self.token = token
        self.user_id = user_id
        self.refresh_token = refresh_token
        # time.monotonic() after which the access token is refreshed before use; None: never.
        self._refresh_after: float | None = None

    def _remember(self, session: Session) -> Session:
        self.token = session.token
        self.user_id = session.user_id
        self.refresh_token = session.refresh_token or None
        lifetime = _token_lifetime(session)
        if lifetime is None:
            self._refresh_after = None
        else:
            margin = min(REFRESH_MARGIN_SECONDS, lifetime / 5)
            self._refresh_after = time.monotonic() + lifetime - margin
        return session

    def _forget(self) -> None:
        self.token = self.refresh_token = None
        self._refresh_after = None

    def should_refresh(self, call: Call[Any]) -> bool:
        """Whether to refresh before sending `call`: its access token expires within the margin."""
        return (
            call.authenticated
            and self.refresh_token is not None
            and self._refresh_after is not None
            and time.monotonic() >= self._refresh_after
        )

    def can_retry(self, call: Call[Any], error: ChirpError) -> bool:
        """Whether a refresh may cure `error`: a 401 on a call that sent an access token."""
        return isinstance(error, Unauthenticated) and call.authenticated and self.refresh_token is not None

    def _me(self) -> int:
        """The logged-in user's ID, for calls made on their behalf.

        Without a token the call goes out with no user and the server answers
        UNAUTHENTICATED; a token without a known user is a usage error caught here.
        """
        if self.user_id is not None:
            return self.user_id
        if self.token is None:
            return 0
        raise ValueError("the client has a token but no user_id: pass user_id= too, or call log_in()")


def _token_lifetime(session: Session) -> float | None:
    """Seconds the access token lives, from its own iat and exp claims (so a client whose clock is
    off still refreshes in time), else from expires_at; None when neither says."""
    try:
        payload = session.token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) - float(claims["iat"])
    except (IndexError, ValueError, KeyError, TypeError):
        pass
    if session.expires_at is None:
        return None
    return max(0.0, session.expires_at.timestamp() - time.time())


class SseDecoder:
    """Server-sent events (the WHATWG format): bytes in, the `data` of each complete event out.

    Comments (`: keep-alive`) and the `event`, `id` and `retry` fields are ignored.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            line, found = self._next_line()
            if not found:
                return events
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
                continue
            name, _, value = line.partition(":")
            if name == "data":
                self._data.append(value.removeprefix(" "))

    def _next_line(self) -> tuple[str, bool]:
        for index, byte in enumerate(self._buffer):
            if byte in (0x0A, 0x0D):
                if byte == 0x0D and index + 1 == len(self._buffer):
                    return "", False  # a lone CR at the end may be half of a CRLF
                end = index + 2 if self._buffer[index : index + 2] == b"\r\n" else index + 1
                line = self._buffer[:index].decode("utf-8", "replace")
                self._buffer = self._buffer[end:]
                return line, True
        return "", False


def stream_event(data: str) -> Tweet | None:
    """The tweet in one stream event (`{"tweet": {...}}`); a Status event raises its error."""
    try:
        decoded = json.loads(data)
    except ValueError as error:
        raise ChirpError(f"stream event is not JSON: {data[:100]!r}") from error
    if not isinstance(decoded, dict):
        raise ChirpError(f"stream event is not a JSON object: {data[:100]!r}")
    tweet = decoded.get("tweet")
    if isinstance(tweet, dict):
        return Tweet.from_json(tweet)
    if "code" in decoded:
        raise error_from_status(200, decoded)
    if "error" in decoded and isinstance(decoded["error"], dict):
        raise error_from_status(200, decoded["error"])
    return None


# gRPC codes after which reopening the stream may succeed.
_RETRYABLE_CODES = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "INTERNAL"}
)


@dataclass(frozen=True)
class ReconnectPolicy:
    """How `stream_home_timeline` reopens a dropped stream.

    An attempt fails when the server cannot be reached or refuses the stream (network
    errors, 5xx, 429), or when an accepted stream ends within `stable_after` seconds
    without a tweet; a stream that delivered a tweet or stayed open longer resets the
    count. After `max_failures` consecutive failed attempts the last error is raised;
    errors no retry can fix (401, 403, 400, ...) are raised at once. Waits grow
    exponentially from `initial_delay` to `max_delay`, with jitter, and never undercut
    a 429's Retry-After. A stream silent for `idle_timeout` seconds is reopened.
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    max_failures: int = 8
    idle_timeout: float | None = 90.0
    stable_after: float = 10.0
    jitter: bool = True
    _random: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def retryable(self, error: ChirpError) -> bool:
        if isinstance(error, TransportError):
            return True
        return isinstance(error, ChirpApiError) and error.code in _RETRYABLE_CODES

    def delay(self, failures: int, error: ChirpError | None = None) -> float:
        """Seconds to wait before the next attempt, after `failures` consecutive failures
        (0 when the server ended a stream it had accepted)."""
        base = min(self.max_delay, self.initial_delay * 2.0 ** max(0, failures - 1))
        if self.jitter:
            base *= self._random.uniform(0.5, 1.0)
        if isinstance(error, RateLimited) and error.retry_after is not None:
            base = max(base, error.retry_after)
        return base


@dataclass
class StreamAttempt:
    """One connection of the stream: whether the server accepted it, and what it delivered."""

    accepted_at: float | None = None
    delivered: bool = False

    def accepted(self) -> None:
        self.accepted_at = time.monotonic()

    def stable(self, policy: ReconnectPolicy) -> bool:
        """True when the connection worked, so earlier failures no longer count."""
        if self.accepted_at is None:
            return False
        return self.delivered or time.monotonic() - self.accepted_at >= policy.stable_after


class RecentIds:
    """The last `size` tweet IDs yielded, so a replay after a reconnect yields nothing twice."""

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._ids: OrderedDict[int, None] = OrderedDict()

    def add(self, tweet_id: int) -> bool:
        """Remember the ID; False if it was already there."""
        if tweet_id in self._ids:
            return False
        self._ids[tweet_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True
