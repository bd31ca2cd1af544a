"""The Python gateway's front door: for every request, authentication then rate limiting, through
the same two edge services and in the same order as Envoy's ext_authz and ratelimit filters.

    guard = Guard(settings)
    decision = await guard.check(GuardRequest("POST", "/tweets", headers, "203.0.113.9", rpc))
    if not decision.allowed: answer decision.http_status with decision.headers and a
        google.rpc.Status body of decision.grpc_code, decision.message and decision.reason
    else: call upstream with x-chirp-user-id = decision.user_id (when not None), never the client's
    await guard.close()

Authentication fails closed (503 when the edge services cannot be reached); rate limiting fails
open (the request goes on, and a warning is logged), as Envoy is configured in envoy.yaml.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import code_pb2

from chirp_core.rpc import REQUEST_ID_HEADER, USER_ID_HEADER, downstream_channel
from chirp_core.settings import Settings
from chirp_envoy_api.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from chirp_envoy_api.envoy.service.auth.v3 import (
    attribute_context_pb2,
    external_auth_pb2,
    external_auth_pb2_grpc,
)
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from edge_proxy.limits import DOMAIN, descriptors_for, limits_file
from edge_proxy.ratelimit import retry_after_seconds

log = logging.getLogger("chirp.edge.guard")

# Rate limiting fails open, so a slow limiter should cost little before the request goes on.
RATE_LIMIT_TIMEOUT_SECONDS = 1.0
# Headers the gateway writes itself along with the Status body it renders.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


@dataclass(frozen=True)
class GuardRequest:
    """One incoming HTTP request. `headers` has lower-case names; `rpc` is the full gRPC method the
    request transcodes to ("/chirp.tweets.v1.TweetService/CreateTweet"), or "" when none (/healthz)."""

    method: str
    path: str
    headers: Mapping[str, str]
    remote_ip: str
    rpc: str


@dataclass(frozen=True)
class GuardDecision:
    """Allowed: call upstream as `user_id` (None: anonymous). Denied: answer `http_status` with
    `headers` (lower-case names: www-authenticate, retry-after) and a google.rpc.Status JSON body
    of `grpc_code`, `message` and one ErrorInfo with `reason`."""

    allowed: bool
    user_id: int | None
    http_status: int
    grpc_code: int
    message: str
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)


def allow(user_id: int | None) -> GuardDecision:
    return GuardDecision(True, user_id, 200, code_pb2.OK, "", "")


class Guard:
    """Client of the edge services at settings.auth_target (edge_proxy.edge_services)."""

    def __init__(self, settings: Settings) -> None:
        self._channel = downstream_channel(settings.auth_target, settings.upstream_timeout_seconds)
        self._authorization = external_auth_pb2_grpc.AuthorizationStub(self._channel)
        self._rate_limits = rls_pb2_grpc.RateLimitServiceStub(self._channel)
        self._limiting = limits_file(settings) is not None
        self._check_timeout = settings.upstream_timeout_seconds
        self._limit_timeout = min(RATE_LIMIT_TIMEOUT_SECONDS, settings.upstream_timeout_seconds)

    async def check(self, request: GuardRequest) -> GuardDecision:
        decision = await self._authorize(request)
        if not decision.allowed or not self._limiting:
            return decision
        return await self._rate_limit(request, decision)

    async def close(self) -> None:
        await self._channel.close(None)

    async def _authorize(self, request: GuardRequest) -> GuardDecision:
        http = attribute_context_pb2.AttributeContext.HttpRequest(
            id=request.headers.get(REQUEST_ID_HEADER, ""),
            method=request.method.upper(),
            path=request.path,
            headers=dict(request.headers),
        )
        check = external_auth_pb2.CheckRequest(
            attributes=attribute_context_pb2.AttributeContext(
                request=attribute_context_pb2.AttributeContext.Request(http=http)
            )
        )
        try:
            response = await self._authorization.Check(check, timeout=self._check_timeout)
        except grpc.aio.AioRpcError as error:
            log.warning("auth service unreachable (%s: %s): refusing", error.code().name, error.details())
            return GuardDecision(
                False,
                None,
                503,
                code_pb2.UNAVAILABLE,
                "authentication is unavailable; try again",
                "AUTH_UNAVAILABLE",
            )
        return decision_from_check(response)

    async def _rate_limit(self, request: GuardRequest, decision: GuardDecision) -> GuardDecision:
        descriptors = descriptors_for(request.rpc, decision.user_id, request.remote_ip)
        if not descriptors:
            return decision
        limit_request = rls_pb2.RateLimitRequest(
            domain=DOMAIN,
            descriptors=[
                ratelimit_pb2.RateLimitDescriptor(
                    entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in descriptor]
                )
                for descriptor in descriptors
            ],
        )
        try:
            response = await self._rate_limits.ShouldRateLimit(limit_request, timeout=self._limit_timeout)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "rate-limit service failed (%s: %s): letting through", error.code().name, error.details()
            )
            return decision
        if response.overall_code != rls_pb2.RateLimitResponse.OVER_LIMIT:
            return decision
        return decision_from_over_limit(response)


def decision_from_check(response: external_auth_pb2.CheckResponse) -> GuardDecision:
    """Read a CheckResponse as Envoy's ext_authz filter reads it."""
    if response.status.code == code_pb2.OK:
        user_id: int | None = None
        for option in response.ok_response.headers:
            if option.header.key.lower() == USER_ID_HEADER:
                user_id = int(option.header.value)
        return allow(user_id)
    denied = response.denied_response
    http_status = denied.status.code if response.HasField("denied_response") and denied.status.code else 403
    headers = {o.header.key.lower(): o.header.value for o in denied.headers}
    code, message, reason = _parse_status_body(
        denied.body.encode(), response.status.code, response.status.message
    )
    return GuardDecision(False, None, http_status, code, message, reason, _without_body_headers(headers))


def decision_from_over_limit(response: rls_pb2.RateLimitResponse) -> GuardDecision:
    headers = {h.key.lower(): h.value for h in response.response_headers_to_add}
    if "retry-after" not in headers:
        resets = [
            s.duration_until_reset.ToNanoseconds() / 1e9
            for s in response.statuses
            if s.code == rls_pb2.RateLimitResponse.OVER_LIMIT
        ]
        headers["retry-after"] = str(retry_after_seconds(max(resets, default=1.0)))
    code, message, reason = _parse_status_body(
        response.raw_body, code_pb2.RESOURCE_EXHAUSTED, "rate limit exceeded"
    )
    return GuardDecision(
        False, None, 429, code, message, reason or "RATE_LIMITED", _without_body_headers(headers)
    )


def _parse_status_body(body: bytes, code: int, message: str) -> tuple[int, str, str]:
    """(code, message, ErrorInfo reason) from a google.rpc.Status JSON body, else the fallbacks."""
    try:
        status: Any = json.loads(body) if body else {}
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    reason = ""
    for detail in status.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            reason = str(detail.get("reason", ""))
            break
    found_code = status.get("code")
    return (
        found_code if isinstance(found_code, int) else code,
        str(status.get("message") or message),
        reason,
    )


def _without_body_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in _BODY_HEADERS}
