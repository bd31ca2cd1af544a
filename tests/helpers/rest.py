"""Helpers for the black-box tests: plain HTTP calls to the gateway and readers of their answers."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

PASSWORD = "correct horse battery"
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")

_handles = itertools.count()


def new_handle(prefix: str = "edge") -> str:
    """A handle no other test (or earlier test session on the same database) uses."""
    return f"{prefix}{next(_handles)}_{uuid.uuid4().hex[:8]}"


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def json(self) -> Any:
        import json

        return json.loads(self.raw)

    @property
    def reason(self) -> str:
        """The ErrorInfo reason of an error answer."""
        for detail in self.json.get("details", []):
            if detail.get("@type") == "type.googleapis.com/google.rpc.ErrorInfo":
                reason: str = detail["reason"]
                return reason
        raise AssertionError(f"no ErrorInfo in {self.raw!r}")

    def expect(self, status: int, reason: str | None = None) -> Reply:
        assert self.status == status, f"{self.status} != {status}: {self.raw!r}"
        if status >= 400:
            body = self.json
            assert isinstance(body["code"], int) and body["code"] > 0, body
            assert isinstance(body.get("message"), str) and body["message"], body
            if reason is not None:
                assert self.reason == reason, body
        return self

    def field_error(self, field: str) -> Reply:
        """A 400 whose message names `field`."""
        self.expect(400)
        assert field in self.json["message"], self.json
        return self


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    user: User | None = None,
    json: Any = None,
    data: bytes | str | None = None,
    params: Mapping[str, str] | list[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    sent = dict(user.headers if user else {})
    sent.update(headers or {})
    async with http.request(method, path, json=json, data=data, params=params, headers=sent) as response:
        return Reply(response.status, response.headers, await response.read())


@dataclass(frozen=True)
class User:
    """A signed-up, logged-in account."""

    id: int
    handle: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(http: aiohttp.ClientSession, handle: str | None = None) -> User:
    """Sign a fresh account up and log it in, through the REST API."""
    handle = handle or new_handle()
    created = await call(http, "POST", "/users", json={"handle": handle, "password": PASSWORD})
    created.expect(200)
    session = await call(http, "POST", "/sessions", json={"handle": handle, "password": PASSWORD})
    session.expect(200)
    assert session.json["user_id"] == created.json["user_id"]
    return User(int(created.json["user_id"]), handle, session.json["token"])


async def signed_up(http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
    """(user_id, auth headers) of a fresh account."""
    user = await sign_up(http)
    return user.id, user.headers


async def tweet(
    http: aiohttp.ClientSession, author: User, content: str = "hello", **fields: Any
) -> dict[str, Any]:
    reply = await call(
        http, "POST", "/tweets", user=author, json={"user_id": str(author.id), "content": content, **fields}
    )
    reply.expect(200)
    document: dict[str, Any] = reply.json
    return document


async def follow(http: aiohttp.ClientSession, follower: User, followee: User) -> None:
    body = {"follower_id": str(follower.id), "followee_id": str(followee.id)}
    (await call(http, "POST", "/follow", user=follower, json=body)).expect(200)


def parse_time(text: str) -> datetime:
    assert RFC3339.fullmatch(text), f"not RFC 3339 UTC: {text!r}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
