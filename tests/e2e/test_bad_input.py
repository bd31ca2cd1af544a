"""Bad input through the real Envoy, for every REST endpoint: deep and huge JSON, invalid UTF-8, lone
surrogates, NUL bytes, wrong types, bad IDs and cursors, and bad bytes in headers. Each answer is a
4xx with a google.rpc.Status JSON body, and the request changes nothing.

The requests go over raw sockets: HTTP libraries refuse to send most of these bytes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg
import pytest

from tests.e2e.conftest import Edge
from tests.helpers.rest import PASSWORD, User, sign_up, tweet

DEPTH = 1_000
OVERFLOW = str(2**64)
# Row contents that any accepted write would change (sessions only by count: logging in creates
# one, and nothing else about them matters here).
STATE_QUERIES = {
    table: f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t"
    for table in ("graph.users", "graph.follows", "tweets.tweets", "tweets.tweet_versions", "tweets.media")
} | {"graph.sessions": "SELECT count(*)::text FROM graph.sessions"}


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"{self.status} {self.body[:300]!r}"


def deep(levels: int = DEPTH) -> bytes:
    return b"[" * levels + b"]" * levels


def deep_object(levels: int = DEPTH) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@dataclass(frozen=True)
class Bad:
    """One bad request. `{me}`, `{other}` and `{tweet}` in the target and body are filled in with
    the caller, another user and the caller's tweet; `field` must be named in the message."""

    name: str
    method: str
    target: str
    body: bytes | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()
    field: str | None = None
    status: tuple[int, ...] = ()  # empty: any 4xx
    signed_in: bool = True


def json_body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def _body_cases() -> list[Bad]:
    """Bad bodies of every endpoint that takes one."""
    sign_up_ok = b'"handle":"newcomer","password":"' + PASSWORD.encode() + b'"'
    tweet_ok = b'"user_id":"{me}"'
    follow_ok = b'"follower_id":"{me}"'
    cases = [
        # POST /users (sign-up, no token).
        Bad("sign-up deep array", "POST", "/users", b"{" + sign_up_ok + b',"display_name":' + deep() + b"}"),
        Bad("sign-up deep object", "POST", "/users", b"{" + sign_up_ok + b',"x":' + deep_object() + b"}"),
        Bad("sign-up deep top level", "POST", "/users", deep()),
        Bad("sign-up bad utf-8", "POST", "/users", b"{" + sign_up_ok + b',"display_name":"a\xff\xfeb"}'),
        Bad("sign-up bad utf-8 handle", "POST", "/users", b'{"handle":"n\xc3","password":"x1234567890"}'),
        Bad(
            "sign-up lone surrogate",
            "POST",
            "/users",
            b"{" + sign_up_ok + b',"display_name":"a\\ud800b"}',
        ),
        Bad(
            "sign-up NUL",
            "POST",
            "/users",
            b"{" + sign_up_ok + b',"display_name":"a\\u0000b"}',
            field="display_name",
        ),
        Bad(
            "sign-up NUL handle",
            "POST",
            "/users",
            json_body(handle="new\x00comer", password=PASSWORD),
            field="handle",
        ),
        Bad(
            "sign-up NUL password", "POST", "/users", json_body(handle="newcomer", password="pass\x00word123")
        ),
        Bad("sign-up raw NUL", "POST", "/users", b"{" + sign_up_ok + b',"display_name":"a\x00b"}'),
        Bad(
            "sign-up control char",
            "POST",
            "/users",
            json_body(handle="new\x07comer", password=PASSWORD),
            field="handle",
        ),
        Bad("sign-up wrong type", "POST", "/users", json_body(handle=5, password=PASSWORD)),
        Bad("sign-up wrong type object", "POST", "/users", json_body(handle={"a": 1}, password=PASSWORD)),
        Bad("sign-up not json", "POST", "/users", b"handle=newcomer"),
        Bad("sign-up truncated", "POST", "/users", b'{"handle":"newcomer","password":'),
        Bad("sign-up array", "POST", "/users", b"[]"),
        Bad("sign-up nothing", "POST", "/users", b"{}", field="handle"),
        # POST /sessions (log-in, no token).
        Bad("log-in bad utf-8", "POST", "/sessions", b'{"handle":"{me_handle}","password":"\xff\xfe"}'),
        Bad("log-in lone surrogate", "POST", "/sessions", b'{"handle":"{me_handle}\\udc00","password":"x"}'),
        Bad("log-in NUL", "POST", "/sessions", b'{"handle":"{me_handle}","password":"a\\u0000"}'),
        Bad("log-in wrong type", "POST", "/sessions", b'{"handle":["{me_handle}"],"password":"x"}'),
        Bad("log-in deep", "POST", "/sessions", b'{"handle":' + deep() + b"}"),
        # POST /sessions/refresh (no token).
        Bad("refresh nothing", "POST", "/sessions/refresh", b"{}", field="refresh_token"),
        Bad(
            "refresh not a token",
            "POST",
            "/sessions/refresh",
            b'{"refresh_token":"x y"}',
            field="refresh_token",
        ),
        Bad("refresh bad utf-8", "POST", "/sessions/refresh", b'{"refresh_token":"\xff\xfe"}'),
        Bad(
            "refresh NUL", "POST", "/sessions/refresh", b'{"refresh_token":"a\\u0000"}', field="refresh_token"
        ),
        Bad("refresh wrong type", "POST", "/sessions/refresh", b'{"refresh_token":["x"]}'),
        Bad("refresh deep", "POST", "/sessions/refresh", b'{"refresh_token":' + deep() + b"}"),
        # POST /tweets.
        Bad("tweet deep", "POST", "/tweets", b"{" + tweet_ok + b',"content":' + deep() + b"}"),
        Bad("tweet deep unknown field", "POST", "/tweets", b"{" + tweet_ok + b',"x":' + deep_object() + b"}"),
        Bad("tweet bad utf-8", "POST", "/tweets", b"{" + tweet_ok + b',"content":"caf\xe9"}'),
        Bad("tweet overlong utf-8", "POST", "/tweets", b"{" + tweet_ok + b',"content":"\xc0\xaf"}'),
        Bad("tweet lone surrogate", "POST", "/tweets", b"{" + tweet_ok + b',"content":"hi \\ud800"}'),
        Bad("tweet low surrogate", "POST", "/tweets", b"{" + tweet_ok + b',"content":"\\udfff hi"}'),
        Bad(
            "tweet NUL", "POST", "/tweets", b"{" + tweet_ok + b',"content":"hi\\u0000there"}', field="content"
        ),
        Bad("tweet wrong type", "POST", "/tweets", b"{" + tweet_ok + b',"content":42}'),
        Bad("tweet user_id not a number", "POST", "/tweets", b'{"user_id":"abc","content":"hi"}'),
        Bad("tweet user_id bool", "POST", "/tweets", b'{"user_id":true,"content":"hi"}'),
        Bad("tweet user_id fraction", "POST", "/tweets", b'{"user_id":1.5,"content":"hi"}'),
        Bad("tweet user_id negative", "POST", "/tweets", b'{"user_id":"-1","content":"hi"}'),
        Bad(
            "tweet user_id overflow",
            "POST",
            "/tweets",
            b'{"user_id":"' + OVERFLOW.encode() + b'","content":"hi"}',
        ),
        Bad(
            "tweet reply_to negative",
            "POST",
            "/tweets",
            b"{" + tweet_ok + b',"content":"hi","reply_to":"-7"}',
            field="reply_to",
        ),
        Bad(
            "tweet reply_to overflow",
            "POST",
            "/tweets",
            b"{" + tweet_ok + b',"content":"hi","reply_to":"' + OVERFLOW.encode() + b'"}',
        ),
        Bad(
            "tweet media_ids not a list",
            "POST",
            "/tweets",
            b"{" + tweet_ok + b',"content":"hi","media_ids":"x"}',
        ),
        Bad(
            "tweet media_ids negative",
            "POST",
            "/tweets",
            b"{" + tweet_ok + b',"content":"hi","media_ids":["-3"]}',
            field="media_ids",
        ),
        Bad(
            "tweet idempotency NUL",
            "POST",
            "/tweets",
            b"{" + tweet_ok + b',"content":"hi","idempotency_key":"k\\u0000"}',
            field="idempotency_key",
        ),
        Bad(
            "tweet too long",
            "POST",
            "/tweets",
            b"{" + tweet_ok + b',"content":"' + b"x" * 281 + b'"}',
            field="content",
        ),
        # PATCH /tweets/{id}.
        Bad("edit lone surrogate", "PATCH", "/tweets/{tweet}", b'{"content":"\\ud800"}'),
        Bad("edit NUL", "PATCH", "/tweets/{tweet}", b'{"content":"a\\u0000"}', field="content"),
        Bad("edit bad utf-8", "PATCH", "/tweets/{tweet}", b'{"content":"\xff"}'),
        Bad("edit deep", "PATCH", "/tweets/{tweet}", b'{"content":' + deep() + b"}"),
        Bad("edit wrong type", "PATCH", "/tweets/{tweet}", b'{"content":{"text":"x"}}'),
        Bad("edit id not a number", "PATCH", "/tweets/abc", b'{"content":"x"}'),
        Bad("edit id negative", "PATCH", "/tweets/-1", b'{"content":"x"}'),
        Bad("edit id overflow", "PATCH", "/tweets/" + OVERFLOW, b'{"content":"x"}'),
        Bad("edit body id differs", "PATCH", "/tweets/{tweet}", b'{"tweet_id":"1","content":"x"}'),
        # POST and DELETE /follow.
        Bad("follow id not a number", "POST", "/follow", b"{" + follow_ok + b',"followee_id":"abc"}'),
        Bad(
            "follow id negative",
            "POST",
            "/follow",
            b"{" + follow_ok + b',"followee_id":"-5"}',
            field="followee_id",
        ),
        Bad(
            "follow id overflow",
            "POST",
            "/follow",
            b"{" + follow_ok + b',"followee_id":"' + OVERFLOW.encode() + b'"}',
        ),
        Bad("follow id list", "POST", "/follow", b"{" + follow_ok + b',"followee_id":["{other}"]}'),
        Bad("follow id NUL", "POST", "/follow", b"{" + follow_ok + b',"followee_id":"{other}\\u0000"}'),
        Bad("follow deep", "POST", "/follow", b"{" + follow_ok + b',"followee_id":' + deep() + b"}"),
        Bad("follow bad utf-8", "POST", "/follow", b"{" + follow_ok + b',"followee_id":"\xff"}'),
        Bad("follow nobody", "POST", "/follow", b"{" + follow_ok + b"}", field="followee_id"),
        Bad("unfollow id not a number", "DELETE", "/follow", b"{" + follow_ok + b',"followee_id":"x1"}'),
        Bad(
            "unfollow id overflow",
            "DELETE",
            "/follow",
            b"{" + follow_ok + b',"followee_id":"' + OVERFLOW.encode() + b'"}',
        ),
        Bad("unfollow deep", "DELETE", "/follow", b"{" + follow_ok + b',"x":' + deep_object() + b"}"),
        # POST /media (upload grant).
        Bad(
            "media NUL content type",
            "POST",
            "/media",
            b'{"content_type":"image/png\\u0000","size_bytes":"10"}',
            field="content_type",
        ),
        Bad("media bad utf-8", "POST", "/media", b'{"content_type":"image/\xff","size_bytes":"10"}'),
        Bad("media lone surrogate", "POST", "/media", b'{"content_type":"image/\\ud800","size_bytes":"10"}'),
        Bad(
            "media size negative",
            "POST",
            "/media",
            b'{"content_type":"image/png","size_bytes":"-1"}',
            field="size_bytes",
        ),
        Bad("media size not a number", "POST", "/media", b'{"content_type":"image/png","size_bytes":"big"}'),
        Bad(
            "media size overflow",
            "POST",
            "/media",
            b'{"content_type":"image/png","size_bytes":"' + OVERFLOW.encode() + b'"}',
        ),
        Bad("media deep", "POST", "/media", b'{"content_type":' + deep() + b"}"),
    ]
    return cases


def _huge_cases() -> list[Bad]:
    """Bodies over the gateway's limit (64 KiB by default): 413 before any service sees them."""
    filler = b"x" * (64 * 1024 + 1)
    return [
        Bad(f"{path} huge", method, path, b'{"x":"' + filler + b'"}', status=(413,))
        for method, path in (
            ("POST", "/users"),
            ("POST", "/sessions"),
            ("POST", "/sessions/refresh"),
            ("POST", "/tweets"),
            ("PATCH", "/tweets/{tweet}"),
            ("POST", "/follow"),
            ("DELETE", "/follow"),
            ("POST", "/media"),
        )
    ]


def _path_and_query_cases() -> list[Bad]:
    """Bad IDs in paths, bad cursors and page sizes in queries."""
    cases = []
    for label, bad_id in (
        ("not a number", "abc"),
        ("negative", "-1"),
        ("overflow", OVERFLOW),
        ("bad utf-8", "%FF"),
        ("NUL", "1%00"),
    ):
        for path in (
            "/tweets/{id}",
            "/tweets/{id}/replies",
            "/tweets/{id}/versions",
            "/users/{id}",
            "/users/{id}/followers",
            "/users/{id}/following",
            "/users/{id}/tweets",
            "/users/{me}/relationships/{id}",
        ):
            cases.append(Bad(f"GET {path} {label}", "GET", path.replace("{id}", bad_id)))
        cases.append(Bad(f"DELETE tweet {label}", "DELETE", f"/tweets/{bad_id}"))
        cases.append(Bad(f"timeline user_id {label}", "GET", f"/timeline?user_id={bad_id}"))
    for label, query, name in (
        ("garbage cursor", "cursor=garbage", "cursor"),
        ("base64 cursor of something else", "cursor=aGVsbG8", "cursor"),
        ("bad utf-8 cursor", "cursor=%FF%FE", "cursor"),
        ("NUL cursor", "cursor=%00", "cursor"),
        ("negative limit", "limit=-1", "limit"),
        ("limit not a number", "limit=ten", ""),
        ("limit overflow", "limit=" + OVERFLOW, ""),
        ("unknown parameter", "colour=red", "colour"),
    ):
        for path in (
            "/timeline?user_id={me}&",
            "/users/{me}/tweets?",
            "/users/{me}/followers?",
            "/users/{me}/following?",
            "/tweets/{tweet}/replies?",
        ):
            cases.append(Bad(f"GET {path} {label}", "GET", path + query, field=name or None))
    for label, query in (("not a number", "abc"), ("negative", "-9"), ("overflow", OVERFLOW)):
        cases.append(
            Bad(f"stream since_id {label}", "GET", "/timeline/stream?user_id={me}&since_id=" + query)
        )
    return cases


def _header_cases() -> list[Bad]:
    """Bad bytes in headers, on a read and on a write whose body is fine."""
    bad_headers: list[tuple[str, tuple[bytes, bytes], bool]] = [
        ("authorization bad utf-8", (b"authorization", b"Bearer \xff\xfe"), False),
        ("authorization control char", (b"authorization", b"Bearer abc\x01def"), False),
        ("authorization DEL", (b"authorization", b"Bearer {token}\x7f"), False),
        ("authorization non-ASCII", (b"authorization", "Bearer tökén".encode()), False),
        ("request id bad utf-8", (b"x-request-id", b"trace-\xff"), True),
        ("request id non-ASCII", (b"x-request-id", "trace-\u00e9\u4e2d".encode()), True),
        ("request id tab", (b"x-request-id", b"trace\tme"), True),
        ("request id control char", (b"x-request-id", b"trace\x01me"), True),
        ("other header bad utf-8", (b"x-client-note", b"\xc3\x28"), True),
        ("other header non-ASCII", (b"user-agent", "clïent/1.0".encode()), True),
        ("other header control char", (b"x-client-note", b"a\x1bb"), True),
        ("other header NUL", (b"x-client-note", b"a\x00b"), True),
        ("header name bad byte", (b"x-cl\xffient", b"1"), True),
        ("content type bad utf-8", (b"content-type", b"application/json; charset=\xff"), True),
    ]
    cases = []
    for label, header, signed_in in bad_headers:
        cases.append(Bad(f"GET user, {label}", "GET", "/users/{me}", headers=[header], signed_in=signed_in))
        cases.append(
            Bad(
                f"POST tweet, {label}",
                "POST",
                "/tweets",
                b'{"user_id":"{me}","content":"should not be posted"}',
                headers=[header],
                signed_in=signed_in,
            )
        )
    cases.append(
        Bad(
            "sign-up, request id non-ASCII",
            "POST",
            "/users",
            json_body(handle="newcomer", password=PASSWORD),
            headers=[(b"x-request-id", "\u00e9".encode())],
            signed_in=False,
        )
    )
    return cases


# The endpoint class of a body case, by its name's first word.
_CLASS_OF = {
    "sign-up": "sign-up and log-in",
    "log-in": "sign-up and log-in",
    "refresh": "sign-up and log-in",
    "tweet": "create and edit tweets",
    "edit": "create and edit tweets",
    "follow": "follow and unfollow",
    "unfollow": "follow and unfollow",
    "media": "media grants",
}


def _tables() -> dict[str, list[Bad]]:
    tables: dict[str, list[Bad]] = {}
    for case in _body_cases():
        tables.setdefault(_CLASS_OF[case.name.split(" ")[0]], []).append(case)
    tables["bodies over the limit"] = _huge_cases()
    ids = [c for c in _path_and_query_cases() if "cursor" not in c.target and "limit=" not in c.target]
    tables["IDs in paths and queries"] = [c for c in ids if "colour" not in c.target]
    tables["cursors and page sizes"] = [
        c for c in _path_and_query_cases() if c not in ids or "colour" in c.target
    ]
    tables["headers"] = _header_cases()
    return tables


TABLES = _tables()


@dataclass
class World:
    me: User
    other: User
    tweet_id: str
    fills: dict[bytes, bytes] = field(default_factory=dict)

    def acting_as(self, user: User) -> World:
        """The same world with `user` as the caller ({me})."""
        fills = {
            **self.fills,
            b"{me_handle}": user.handle.encode(),
            b"{me}": str(user.id).encode(),
            b"{token}": user.token.encode(),
        }
        return World(user, self.other, self.tweet_id, fills)

    def fill(self, text: bytes) -> bytes:
        for key, value in self.fills.items():
            text = text.replace(key, value)
        return text


async def send_raw(
    url: str, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes | None
) -> RawReply:
    """One HTTP/1.1 request, exactly these bytes, on a connection of its own; the answer read to EOF."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        lines = [method.encode() + b" " + target + b" HTTP/1.1", b"host: " + parts.netloc.encode()]
        lines += [name + b": " + value for name, value in headers]
        if body is not None:
            lines.append(b"content-type: application/json")
            lines.append(b"content-length: " + str(len(body)).encode())
        lines.append(b"connection: close")
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    return parse_response(raw)


def parse_response(raw: bytes) -> RawReply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return RawReply(int(status_line.split(" ")[1]), headers, body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


async def state(database_url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        result = {}
        for table, query in STATE_QUERIES.items():
            row = await (await conn.execute(query)).fetchone()
            assert row is not None
            result[table] = row[0]
        return result


def assert_status_json(reply: RawReply, case: Bad) -> dict[str, Any]:
    assert 400 <= reply.status < 500, reply
    if case.status:
        assert reply.status in case.status, reply
    assert reply.headers.get("content-type", "").startswith("application/json"), (reply.headers, reply)
    status = json.loads(reply.body)
    assert isinstance(status, dict), reply
    assert isinstance(status.get("code"), int) and 0 < status["code"] <= 16, reply
    assert isinstance(status.get("message"), str) and status["message"], reply
    assert isinstance(status.get("details", []), list), reply
    if case.field is not None:
        assert case.field in status["message"], reply
    return status


async def make_world(http: aiohttp.ClientSession) -> World:
    me = await sign_up(http)
    other = await sign_up(http)
    posted = await tweet(http, me, "the one tweet")
    world = World(me, other, posted["tweet_id"])
    world.fills = {
        b"{me_handle}": me.handle.encode(),
        b"{me}": str(me.id).encode(),
        b"{other}": str(other.id).encode(),
        b"{tweet}": posted["tweet_id"].encode(),
        b"{token}": me.token.encode(),
    }
    return world


@pytest.mark.parametrize("table", list(TABLES))
async def test_bad_input_is_a_4xx_status_and_changes_nothing(
    table: str, http: aiohttp.ClientSession, edge: Edge, database_url: str
) -> None:
    """Every case of one endpoint class, against one set of users (each table is a test)."""
    first = await make_world(http)
    failures = []
    for case in TABLES[table]:
        # Each attempt to post spends the caller's tweet budget (5 a minute in the test limits),
        # bad or not: a post is made by a caller of its own.
        world = first.acting_as(await sign_up(http)) if case.target == "/tweets" else first
        signed_in = [(b"authorization", b"Bearer " + world.me.token.encode())]
        headers = (signed_in if case.signed_in else []) + [(n, world.fill(v)) for n, v in case.headers]
        before = await state(database_url)
        body = None if case.body is None else world.fill(case.body)
        reply = await send_raw(edge.url, case.method, world.fill(case.target.encode()), headers, body)
        try:
            assert_status_json(reply, case)
            assert await state(database_url) == before, "the request changed something"
        except AssertionError as failure:
            failures.append(f"{case.name}: {failure}")
    assert not failures, "\n".join(failures)
    # The gateway and the services still answer the same caller.
    signed_in = [(b"authorization", b"Bearer " + first.me.token.encode())]
    check = await send_raw(edge.url, "GET", f"/users/{first.me.id}".encode(), signed_in, None)
    assert check.status == 200, check


@pytest.mark.parametrize(
    ("target", "method", "code"),
    [
        ("/timeline?user_id={me}&cursor=%FF", "GetHomeTimeline", "INVALID_ARGUMENT"),
        ("/users/987654321/tweets", "GetUserTimeline", "NOT_FOUND"),
        ("/tweets/{me}", "GetTweet", "NOT_FOUND"),
    ],
)
async def test_a_client_error_is_logged_once_at_info_without_a_traceback(
    target: str,
    method: str,
    code: str,
    http: aiohttp.ClientSession,
    edge: Edge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    me = await sign_up(http)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    path = target.replace("{me}", str(me.id)).encode()
    reply = await send_raw(edge.url, "GET", path, [(b"authorization", b"Bearer " + me.token.encode())], None)
    assert_status_json(reply, Bad("logged", "GET", target))
    # Chirp's RPC layer, the edge services and gRPC; any error or traceback from anywhere.
    logged = [
        r
        for r in caplog.records
        if (r.levelno >= logging.INFO and r.name.startswith(("chirp.rpc", "chirp.edge", "grpc")))
        or r.levelno >= logging.ERROR
        or r.exc_info
    ]
    assert [(r.levelno, method in r.getMessage(), code in r.getMessage()) for r in logged] == [
        (logging.INFO, True, True)
    ], [r.getMessage() for r in logged]
    assert logged[0].exc_info is None
