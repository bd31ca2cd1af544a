"""Pure tests of the error mapping: google.rpc.Status JSON (or a bare HTTP status) to exceptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from chirp_client import (
    AlreadyExists,
    ChirpApiError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from chirp_client.errors import error_from_response, parse_retry_after


def status_body(code: int, message: str, reason: str = "", **metadata: str) -> bytes:
    details = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "chirp.dev",
                "metadata": metadata,
            }
        )
    return json.dumps({"code": code, "message": message, "details": details}).encode()


def test_status_json_becomes_the_typed_exception_with_every_field() -> None:
    body = status_body(5, "tweet 42 not found", "TWEET_NOT_FOUND", id="42")

    error = error_from_response(404, body)

    assert isinstance(error, NotFound)
    assert (error.http_status, error.code, error.grpc_code) == (404, "NOT_FOUND", 5)
    assert error.message == "tweet 42 not found"
    assert error.reason == "TWEET_NOT_FOUND"
    assert error.metadata == {"id": "42"}
    assert "tweet 42 not found" in str(error)


@pytest.mark.parametrize(
    ("http_status", "code", "cls"),
    [
        (400, 3, InvalidArgument),
        (401, 16, Unauthenticated),
        (403, 7, PermissionDenied),
        (404, 5, NotFound),
        (409, 6, AlreadyExists),
        (400, 9, FailedPrecondition),
        (429, 8, RateLimited),
        (503, 14, Unavailable),
    ],
)
def test_each_common_code_has_its_class(http_status: int, code: int, cls: type[ChirpApiError]) -> None:
    error = error_from_response(http_status, status_body(code, "nope"))

    assert type(error) is cls
    assert error.grpc_code == code
    assert error.code == cls.grpc_code_name


def test_the_grpc_code_in_the_body_wins_over_the_http_status() -> None:
    # FAILED_PRECONDITION and INVALID_ARGUMENT share 400; only the body tells them apart.
    error = error_from_response(400, status_body(9, "tweet was deleted", "TWEET_DELETED"))

    assert isinstance(error, FailedPrecondition)
    assert not isinstance(error, InvalidArgument)


def test_invalid_argument_names_its_field() -> None:
    body = status_body(3, "content: at most 280 characters", "INVALID_FIELD", field="content")

    error = error_from_response(400, body)

    assert isinstance(error, InvalidArgument)
    assert error.field == "content"
    unnamed = error_from_response(400, status_body(3, "bad"))
    assert isinstance(unnamed, InvalidArgument)
    assert unnamed.field is None


def test_a_code_without_a_class_is_a_plain_api_error() -> None:
    error = error_from_response(501, status_body(12, "not built yet"))

    assert type(error) is ChirpApiError
    assert (error.code, error.grpc_code) == ("UNIMPLEMENTED", 12)


def test_rate_limited_carries_retry_after_in_seconds() -> None:
    error = error_from_response(429, status_body(8, "slow down"), retry_after="7")

    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0
    bare = error_from_response(429, b"")
    assert isinstance(bare, RateLimited)
    assert bare.retry_after is None


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None


@pytest.mark.parametrize(
    ("http_status", "cls", "code"),
    [
        (503, Unavailable, "UNAVAILABLE"),
        (502, Unavailable, "UNAVAILABLE"),
        (401, Unauthenticated, "UNAUTHENTICATED"),
        (404, NotFound, "NOT_FOUND"),
        (413, InvalidArgument, "INVALID_ARGUMENT"),
        (500, ChirpApiError, "INTERNAL"),
        (418, ChirpApiError, "UNKNOWN"),
    ],
)
def test_a_body_that_is_no_status_falls_back_to_the_http_status(
    http_status: int, cls: type[ChirpApiError], code: str
) -> None:
    error = error_from_response(http_status, b"<html><h1>Bad Gateway</h1></html>")

    assert type(error) is cls
    assert error.code == code
    assert error.http_status == http_status
    assert error.reason == ""
    assert "Bad Gateway" in error.message


def test_details_without_error_info_leave_reason_empty() -> None:
    body = json.dumps(
        {"code": 3, "message": "bad", "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest"}]}
    ).encode()

    error = error_from_response(400, body)

    assert isinstance(error, InvalidArgument)
    assert (error.reason, error.metadata) == ("", {})
