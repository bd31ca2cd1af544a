"""The route table read from the descriptors, and the JSON <-> proto transcoding, without a server."""

from __future__ import annotations

import json
from dataclasses import replace

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from chirp.graph.v1 import graph_pb2
from chirp.timeline.v1 import timeline_pb2
from chirp.tweets.v1 import tweets_pb2
from chirp.users.v1 import users_pb2
from chirp_core.settings import Settings
from edge_proxy.gateway import Gateway
from edge_proxy.http_status import http_status
from edge_proxy.routes import (
    NoRoute,
    PathTemplate,
    Router,
    TemplateError,
    WrongMethod,
    build_routes,
    chirp_services,
)
from edge_proxy.transcoder import (
    TranscodeError,
    build_request,
    make_status,
    response_json,
    status_from_trailers,
    status_json,
)

ROUTES = build_routes(chirp_services())
ROUTER = Router(ROUTES)

# The public REST API of the design page and issue 3, as (verb, template, RPC).
CONTRACT = {
    ("POST", "/users", "/chirp.users.v1.UserService/CreateUser"),
    ("GET", "/users/{user_id}", "/chirp.users.v1.UserService/GetUser"),
    ("POST", "/sessions", "/chirp.users.v1.UserService/CreateSession"),
    ("POST", "/follow", "/chirp.graph.v1.GraphService/Follow"),
    ("DELETE", "/follow", "/chirp.graph.v1.GraphService/Unfollow"),
    ("GET", "/users/{user_id}/followers", "/chirp.graph.v1.GraphService/ListFollowers"),
    ("GET", "/users/{user_id}/following", "/chirp.graph.v1.GraphService/ListFollowing"),
    (
        "GET",
        "/users/{user_id}/relationships/{other_user_id}",
        "/chirp.graph.v1.GraphService/GetRelationship",
    ),
    ("POST", "/tweets", "/chirp.tweets.v1.TweetService/CreateTweet"),
    ("GET", "/tweets/{tweet_id}", "/chirp.tweets.v1.TweetService/GetTweet"),
    ("PATCH", "/tweets/{tweet_id}", "/chirp.tweets.v1.TweetService/EditTweet"),
    ("DELETE", "/tweets/{tweet_id}", "/chirp.tweets.v1.TweetService/DeleteTweet"),
    ("GET", "/tweets/{tweet_id}/replies", "/chirp.tweets.v1.TweetService/ListReplies"),
    ("GET", "/tweets/{tweet_id}/versions", "/chirp.tweets.v1.TweetService/ListTweetVersions"),
    ("POST", "/media", "/chirp.tweets.v1.TweetService/CreateMediaUpload"),
    ("GET", "/timeline", "/chirp.timeline.v1.TimelineService/GetHomeTimeline"),
    ("GET", "/users/{user_id}/tweets", "/chirp.timeline.v1.TimelineService/GetUserTimeline"),
    ("GET", "/timeline/stream", "/chirp.timeline.v1.TimelineService/StreamHomeTimeline"),
}


def test_every_http_rule_of_every_chirp_service_is_routed() -> None:
    expected = set()
    for module in (users_pb2, graph_pb2, tweets_pb2, timeline_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if not method.GetOptions().HasExtension(annotations_pb2.http):
                    continue
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                expected.add((verb.upper(), getattr(rule, verb), f"/{service.full_name}/{method.name}"))
    routed = {(r.verb, r.template.text, r.rpc) for r in ROUTES}
    assert routed == expected
    assert routed == CONTRACT


def test_internal_rpcs_have_no_route() -> None:
    rpcs = {r.rpc for r in ROUTES}
    assert "/chirp.users.v1.UserService/ValidateToken" not in rpcs
    assert "/chirp.tweets.v1.TweetService/BatchGetTweets" not in rpcs


def test_body_response_body_and_streaming_come_from_the_rules() -> None:
    by_rpc = {r.rpc.rsplit("/", 1)[1]: r for r in ROUTES}
    assert (by_rpc["CreateTweet"].body, by_rpc["CreateTweet"].response_body) == ("*", "")
    assert (by_rpc["GetTweet"].body, by_rpc["GetTweet"].response_body) == ("", "")
    assert (by_rpc["CreateSession"].body, by_rpc["CreateSession"].response_body) == ("*", "")
    assert by_rpc["StreamHomeTimeline"].server_streaming
    assert not by_rpc["GetHomeTimeline"].server_streaming
    assert by_rpc["CreateTweet"].request_type is tweets_pb2.CreateTweetRequest
    assert by_rpc["GetUser"].response_type is users_pb2.User


@pytest.mark.parametrize(
    ("verb", "path", "rpc", "bindings"),
    [
        ("GET", "/users/42", "GetUser", {"user_id": "42"}),
        ("GET", "/users/42/tweets", "GetUserTimeline", {"user_id": "42"}),
        ("GET", "/users/1/relationships/2", "GetRelationship", {"user_id": "1", "other_user_id": "2"}),
        ("GET", "/timeline/stream", "StreamHomeTimeline", {}),
        ("DELETE", "/follow", "Unfollow", {}),
        ("PATCH", "/tweets/7", "EditTweet", {"tweet_id": "7"}),
        ("GET", "/tweets/a%20b", "GetTweet", {"tweet_id": "a b"}),
    ],
)
def test_router_matches_verb_and_template(verb: str, path: str, rpc: str, bindings: dict[str, str]) -> None:
    match = ROUTER.match(verb, path)
    assert match.route.rpc.endswith("/" + rpc)
    assert dict(match.bindings) == bindings


@pytest.mark.parametrize("path", ["/nope", "/users/1/2", "/tweets/", "/tweets/1/replies/x", "/"])
def test_router_unknown_path(path: str) -> None:
    with pytest.raises(NoRoute):
        ROUTER.match("GET", path)


def test_router_wrong_method_lists_the_allowed_ones() -> None:
    with pytest.raises(WrongMethod) as wrong:
        ROUTER.match("PUT", "/tweets/5")
    assert set(wrong.value.allowed) == {"GET", "PATCH", "DELETE"}
    with pytest.raises(WrongMethod):
        ROUTER.match("GET", "/follow")


def test_templates_with_wildcards_verbs_and_literal_precedence() -> None:
    template = PathTemplate.parse("/v1/{name=shelves/*/books/*}:publish")
    assert template.match("/v1/shelves/s1/books/b%2F2:publish") == {"name": "shelves/s1/books/b%2F2"}
    assert template.match("/v1/shelves/s1/books/b2") is None
    assert PathTemplate.parse("/files/{path=**}").match("/files/a/b/c") == {"path": "a/b/c"}
    assert PathTemplate.parse("/x/{id=*}").match("/x/1") == {"id": "1"}
    with pytest.raises(TemplateError):
        PathTemplate.parse("users/{id}")
    with pytest.raises(TemplateError):
        PathTemplate.parse("/users/{id")
    general = next(r for r in ROUTES if r.rpc.endswith("/GetUser"))
    special = replace(general, template=PathTemplate.parse("/users/me"))
    assert Router([general, special]).match("GET", "/users/me").route.template.text == "/users/me"
    assert Router([special, general]).match("GET", "/users/12").route.template.text == "/users/{user_id}"


def test_body_star_with_path_field_the_path_wins() -> None:
    match = ROUTER.match("PATCH", "/tweets/77")
    request = build_request(match.route, match.bindings, [], b'{"tweet_id":"5","content":"new"}')
    assert request == tweets_pb2.EditTweetRequest(tweet_id=77, content="new")


def test_body_int64_as_number_or_string_and_unknown_fields_ignored() -> None:
    match = ROUTER.match("POST", "/tweets")
    as_string = build_request(match.route, {}, [], b'{"user_id":"9007199254740993","content":"x","bogus":1}')
    as_number = build_request(match.route, {}, [], b'{"user_id":9007199254740993,"content":"x"}')
    camel = build_request(match.route, {}, [], b'{"userId":"9007199254740993","content":"x"}')
    assert as_string == as_number == camel
    assert as_string == tweets_pb2.CreateTweetRequest(user_id=9007199254740993, content="x")


def test_empty_body_is_an_empty_message() -> None:
    match = ROUTER.match("POST", "/follow")
    assert build_request(match.route, {}, [], b"  ") == graph_pb2.FollowRequest()


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        (b'{"user_id": 1,', "MALFORMED_JSON", ""),
        (b"[1, 2]", "MALFORMED_JSON", ""),
        (b'"text"', "MALFORMED_JSON", ""),
        (b"\xff\xfe", "MALFORMED_JSON", ""),
        (b'{"user_id": "abc"}', "INVALID_FIELD", "user_id"),
        (b'{"user_id": 1.5}', "INVALID_FIELD", "user_id"),
        (b'{"content": 5}', "INVALID_FIELD", "content"),
        (b'{"content": ["a"]}', "INVALID_FIELD", "content"),
    ],
)
def test_bad_bodies_are_400_naming_the_problem(body: bytes, reason: str, field: str) -> None:
    match = ROUTER.match("POST", "/tweets")
    with pytest.raises(TranscodeError) as error:
        build_request(match.route, {}, [], body)
    assert error.value.http_status == 400
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.reason == reason
    assert error.value.field == field
    if field:
        assert field in error.value.message


def test_query_parameters_fill_the_remaining_fields() -> None:
    match = ROUTER.match("GET", "/timeline")
    query = [("user_id", "12"), ("limit", "-1"), ("cursor", "abc")]
    request = build_request(match.route, match.bindings, query, b"")
    assert request == timeline_pb2.GetHomeTimelineRequest(user_id=12, limit=-1, cursor="abc")
    match = ROUTER.match("GET", "/users/3/followers")
    request = build_request(match.route, match.bindings, [("limit", "5")], b"")
    assert request == graph_pb2.ListFollowersRequest(user_id=3, limit=5)


@pytest.mark.parametrize(
    ("verb", "path", "query", "reason"),
    [
        ("GET", "/timeline", [("bogus", "1")], "UNKNOWN_QUERY_PARAMETER"),
        ("GET", "/users/3/followers", [("user_id", "4")], "UNKNOWN_QUERY_PARAMETER"),  # bound by the path
        ("POST", "/tweets", [("content", "x")], "UNKNOWN_QUERY_PARAMETER"),  # body "*" takes every field
        ("GET", "/timeline", [("limit", "ten")], "INVALID_FIELD"),
        ("GET", "/timeline", [("limit", "1.5")], "INVALID_FIELD"),
        ("GET", "/timeline", [("limit", "99999999999")], "INVALID_FIELD"),  # out of int32 range
        ("GET", "/timeline", [("user_id", "1"), ("user_id", "2")], "INVALID_FIELD"),
        ("GET", "/tweets/abc", [], "INVALID_FIELD"),  # a path binding of the wrong type
    ],
)
def test_bad_query_parameters_are_400(
    verb: str, path: str, query: list[tuple[str, str]], reason: str
) -> None:
    match = ROUTER.match(verb, path)
    with pytest.raises(TranscodeError) as error:
        build_request(match.route, match.bindings, query, b"")
    assert (error.value.http_status, error.value.reason) == (400, reason)
    document = json.loads(status_json(error.value.status()))
    assert document["code"] == 3
    assert document["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert document["details"][0]["reason"] == reason


def test_repeated_query_parameters_and_scalar_kinds() -> None:
    # No public rule has a repeated field: a route over an internal RPC shows the query form.
    route = next(r for r in ROUTES if r.rpc.endswith("/GetHomeTimeline"))
    batch = replace(route, request_type=tweets_pb2.ListTweetsByAuthorsRequest)
    query = [("author_ids", "1"), ("author_ids", "2"), ("maxId", "9"), ("limit", "3")]
    request = build_request(batch, {}, query, b"")
    assert request == tweets_pb2.ListTweetsByAuthorsRequest(author_ids=[1, 2], max_id=9, limit=3)


def test_response_json_is_compact_snake_case_with_int64_strings_and_rfc3339() -> None:
    route = ROUTER.match("POST", "/tweets").route
    tweet = tweets_pb2.Tweet(tweet_id=2**62 + 1, user_id=3, content="héllo", version=1)
    tweet.created_at.FromJsonString("2024-05-06T07:08:09.123Z")
    body = response_json(route, tweet)
    assert (
        body
        == (
            '{"tweet_id":"4611686018427387905","user_id":"3","content":"héllo",'
            '"created_at":"2024-05-06T07:08:09.123Z","version":1}'
        ).encode()
    )
    whole = ROUTER.match("POST", "/sessions").route
    session = users_pb2.CreateSessionResponse(
        token="t", user_id=5, expires_at=timestamp_pb2.Timestamp(seconds=0)
    )
    assert response_json(whole, session) == b'{"token":"t","user_id":"5","expires_at":"1970-01-01T00:00:00Z"}'
    empty = ROUTER.match("DELETE", "/tweets/1").route
    assert response_json(empty, tweets_pb2.DeleteTweetResponse()) == b"{}"


def test_status_json_from_the_details_trailer_and_without_one() -> None:
    info = error_details_pb2.ErrorInfo(reason="NOT_YOURSELF", domain="chirp.dev", metadata={"k": "v"})
    rich = make_status(7, "nope", [info])
    decoded = status_from_trailers(
        grpc.StatusCode.PERMISSION_DENIED, "nope", [("grpc-status-details-bin", rich.SerializeToString())]
    )
    assert json.loads(status_json(decoded)) == {
        "code": 7,
        "message": "nope",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "NOT_YOURSELF",
                "domain": "chirp.dev",
                "metadata": {"k": "v"},
            }
        ],
    }
    plain = status_from_trailers(grpc.StatusCode.UNAVAILABLE, "down", [("other", "x")])
    assert status_json(plain) == b'{"code":14,"message":"down"}'


def test_status_json_keeps_a_detail_of_an_unknown_type() -> None:
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.Secret", value=b"\x01\x02")
    document = json.loads(status_json(status_pb2.Status(code=2, message="m", details=[unknown])))
    assert document["details"] == [{"@type": "type.googleapis.com/acme.Secret", "value": "AQI="}]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.OK, 200),
        (grpc.StatusCode.CANCELLED, 499),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
    ],
)
def test_envoy_status_table(code: grpc.StatusCode, status: int) -> None:
    assert http_status(code) == status
    assert http_status(code.value[0]) == status


def test_unknown_numeric_code_is_500() -> None:
    assert http_status(99) == 500


async def test_a_service_without_an_upstream_fails_start_up() -> None:
    route = replace(ROUTES[0], service="acme.v1.OtherService")
    with pytest.raises(ValueError, match=r"no upstream for acme\.v1\.OtherService"):
        Gateway(Settings(), None, routes=[route])
