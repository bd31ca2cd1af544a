"""GET /openapi.json: the OpenAPI document generated from the contracts, served by Envoy. It is the
committed edge_proxy/openapi.json, valid OpenAPI 3.1, names every REST route Envoy routes (and which
need no token), and what the live stack answers fits its schemas."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate

from edge_proxy.envoy_config import (
    JWT_AUTHN,
    OPENAPI_FILE,
    OPENAPI_PATH,
    SIGNED_IN,
    production_options,
    routes,
)
from edge_proxy.http_rules import template_regex
from edge_proxy.openapi import openapi_document, render
from tests.helpers.rest import PASSWORD, Reply, User, call, follow, sign_up, tweet

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_FILE.read_text())


def answer_schema(path: str, verb: str, status: int) -> dict[str, Any]:
    """The JSON schema the document gives the answer of `verb path` with this status (the
    `default` answer for an undocumented status), its references resolvable."""
    responses = DOCUMENT["paths"][path][verb.lower()]["responses"]
    response = responses.get(str(status), responses.get("default"))
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return {**schema, "components": DOCUMENT["components"]}


def check(reply: Reply, path: str, verb: str) -> Any:
    """The answer's JSON, validated against its schema in the document (formats checked)."""
    assert reply.headers["Content-Type"] == "application/json", reply.headers
    body = reply.json
    jsonschema.Draft202012Validator(
        answer_schema(path, verb, reply.status), format_checker=jsonschema.FormatChecker()
    ).validate(body)
    return body


def test_the_committed_document_is_what_the_contracts_generate() -> None:
    assert OPENAPI_FILE.read_text() == render(openapi_document()), "run `python scripts/protos.py generate`"


def test_the_document_is_valid_openapi() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")


def _rest_routes() -> dict[tuple[str, str], bool]:
    """(method, path regex) of every REST route in Envoy's config -> whether it needs a token."""
    found: dict[tuple[str, str], bool] = {}
    for route in routes(production_options()):
        match = route["match"]
        if "route" not in route or "safe_regex" not in match:
            continue
        (method,) = (h["string_match"]["exact"] for h in match["headers"] if h["name"] == ":method")
        jwt = route.get("typed_per_filter_config", {}).get(JWT_AUTHN, {})
        found[(method, match["safe_regex"]["regex"])] = jwt.get("requirement_name") == SIGNED_IN
    return found


def _operations() -> dict[tuple[str, str], bool]:
    """(method, path regex) of every operation of the document but Envoy's own -> needs a token."""
    found: dict[tuple[str, str], bool] = {}
    for path, operations in DOCUMENT["paths"].items():
        for verb, operation in operations.items():
            if "Envoy" in operation["tags"]:
                continue
            needs_token = operation.get("security", DOCUMENT["security"]) != []
            found[(verb.upper(), template_regex(path)[0])] = needs_token
    return found


def test_every_rest_route_is_an_operation_and_only_the_public_ones_need_no_token() -> None:
    envoy = _rest_routes()
    assert len(envoy) >= 15
    assert _operations() == envoy
    public = sorted(r for r, token in envoy.items() if not token)
    assert public == [("POST", "/sessions"), ("POST", "/sessions/refresh"), ("POST", "/users")]
    for path in ("/healthz", OPENAPI_PATH):
        assert DOCUMENT["paths"][path]["get"]["security"] == []


def test_the_schemas_follow_the_transcoders_json() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    tweet_fields = schemas["chirp.tweets.v1.Tweet"]["properties"]
    assert tweet_fields["tweet_id"]["type"] == "string"  # int64 as a string
    assert tweet_fields["version"]["type"] == "integer"
    assert tweet_fields["created_at"] == {"type": "string", "format": "date-time"}
    assert tweet_fields["media"]["items"] == {"$ref": "#/components/schemas/chirp.tweets.v1.Media"}
    assert schemas["chirp.tweets.v1.MediaUpload"]["properties"]["fields"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }
    assert schemas["chirp.graph.v1.FollowResponse"]["properties"] == {}
    edit = DOCUMENT["paths"]["/tweets/{tweet_id}"]["patch"]
    assert [p["name"] for p in edit["parameters"]] == ["tweet_id"]
    assert set(edit["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"content"}
    timeline = DOCUMENT["paths"]["/timeline"]["get"]
    assert [(p["name"], p["in"]) for p in timeline["parameters"]] == [
        ("user_id", "query"),
        ("limit", "query"),
        ("cursor", "query"),
    ]
    stream = DOCUMENT["paths"]["/timeline/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]


def test_a_schema_rejects_what_the_transcoder_would_never_print() -> None:
    components = DOCUMENT["components"]
    tweet_schema = {"$ref": "#/components/schemas/chirp.tweets.v1.Tweet", "components": components}
    validator = jsonschema.Draft202012Validator(tweet_schema, format_checker=jsonschema.FormatChecker())
    assert validator.is_valid({"tweet_id": "12", "created_at": "2024-05-01T10:00:00Z"})
    assert not validator.is_valid({"tweet_id": 12})
    assert not validator.is_valid({"tweetId": "12"})
    assert not validator.is_valid({"created_at": "yesterday"})


async def test_envoy_serves_the_committed_document_without_a_token(http: aiohttp.ClientSession) -> None:
    async with http.get(OPENAPI_PATH) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert await response.read() == OPENAPI_FILE.read_bytes()
    (await call(http, "POST", OPENAPI_PATH)).expect(405)


async def test_live_answers_fit_their_schemas(http: aiohttp.ClientSession) -> None:
    ada = await sign_up(http)
    bob = await sign_up(http)
    created = await call(http, "POST", "/users", json={"handle": "x", "password": "short"})
    check(created, "/users", "POST")
    assert created.status == 400
    session = await call(http, "POST", "/sessions", json={"handle": ada.handle, "password": PASSWORD})
    check(session.expect(200), "/sessions", "POST")

    await follow(http, ada, bob)
    posted = await tweet(http, bob, "schema me")
    replied = await tweet(http, ada, "a reply", reply_to=posted["tweet_id"])
    edited = await call(http, "PATCH", f"/tweets/{posted['tweet_id']}", user=bob, json={"content": "edited"})
    assert check(edited.expect(200), "/tweets/{tweet_id}", "PATCH")["version"] == 2

    reads: list[tuple[str, str, User, dict[str, str] | None]] = [
        (f"/tweets/{posted['tweet_id']}", "/tweets/{tweet_id}", ada, None),
        (f"/tweets/{posted['tweet_id']}/versions", "/tweets/{tweet_id}/versions", ada, None),
        (f"/tweets/{posted['tweet_id']}/replies", "/tweets/{tweet_id}/replies", ada, None),
        ("/timeline", "/timeline", ada, {"user_id": str(ada.id), "limit": "1"}),
        (f"/users/{bob.id}", "/users/{user_id}", ada, None),
        (f"/users/{bob.id}/followers", "/users/{user_id}/followers", ada, None),
        (f"/users/{bob.id}/tweets", "/users/{user_id}/tweets", ada, None),
        (
            f"/users/{ada.id}/relationships/{bob.id}",
            "/users/{user_id}/relationships/{other_user_id}",
            ada,
            {},
        ),
    ]
    for url, template, user, params in reads:
        check((await call(http, "GET", url, user=user, params=params)).expect(200), template, "GET")
    page = check(
        await call(http, "GET", "/timeline", user=ada, params={"user_id": str(ada.id), "limit": "1"}),
        "/timeline",
        "GET",
    )
    assert page["tweets"][0]["tweet_id"] == replied["tweet_id"] and page["next_cursor"]

    errors = [
        (await call(http, "GET", "/timeline", params={"user_id": str(ada.id)}), 401, "/timeline"),
        (await call(http, "GET", "/timeline", user=ada, params={"user_id": str(bob.id)}), 403, "/timeline"),
        (await call(http, "GET", "/tweets/1", user=ada), 404, "/tweets/{tweet_id}"),
        (await call(http, "GET", "/timeline", user=ada, params={"user_id": "ada"}), 400, "/timeline"),
    ]
    for reply, status, template in errors:
        assert reply.status == status, reply.raw
        check(reply, template, "GET")
    unfollowed = await call(
        http, "DELETE", "/follow", user=ada, json={"follower_id": str(ada.id), "followee_id": str(bob.id)}
    )
    assert check(unfollowed.expect(200), "/follow", "DELETE") == {}


@pytest.mark.parametrize("status", [200, 503])
def test_the_health_answers_are_documented(status: int) -> None:
    schema = answer_schema("/healthz", "GET", status)
    serving = "SERVING" if status == 200 else "NOT_SERVING"
    assert jsonschema.Draft202012Validator(schema).is_valid({"status": serving})
    assert not jsonschema.Draft202012Validator(schema).is_valid({"status": "MAYBE"})
