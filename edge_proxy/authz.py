"""Authentication at the edge: Envoy's ext_authz gRPC API (envoy.service.auth.v3.Authorization/Check).

Envoy asks it about every request. A bearer token
is resolved to its user by UserService.ValidateToken, with a short Redis cache in front; the
allowed request goes upstream with x-chirp-user-id set to that user, whatever the client sent.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio
from google.protobuf import wrappers_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from chirp.users.v1 import users_pb2, users_pb2_grpc
from chirp_core.rpc import USER_ID_HEADER, status_body
from chirp_envoy_api.envoy.config.core.v3 import base_pb2
from chirp_envoy_api.envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from chirp_envoy_api.envoy.type.v3 import http_status_pb2

log = logging.getLogger("chirp.edge.authz")

# A route Envoy marks public (edge_proxy.envoy_config: sign-up, log-in) sends this context
# extension: no token needed. The client-sent x-chirp-user-id is still removed.
AUTH_POLICY_KEY = "auth"
PUBLIC_POLICY = "public"
CACHE_PREFIX = "chirp:auth:"
# RFC 6750 section 2.1: "Bearer" (any case), one space, a b64token.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_ERRORS_TO_CATCH = (redis.RedisError, OSError)


@dataclass(frozen=True)
class Denial:
    """Why a request is refused, and the HTTP answer the client gets."""

    http_status: int
    code: int  # google.rpc.Code
    message: str
    reason: str
    headers: Mapping[str, str]


class TokenCache:
    """Validated tokens in Redis, keyed by the token's SHA-256, for at most `max_seconds` and never
    past the token's expiry. A revoked session may so keep working for up to `max_seconds`.
    Redis failures are logged and read as a miss: the user service is then asked every time."""

    def __init__(self, client: redis.asyncio.Redis, max_seconds: float) -> None:
        self._redis = client
        self._max_seconds = max_seconds

    @staticmethod
    def key(token: str) -> str:
        return CACHE_PREFIX + hashlib.sha256(token.encode()).hexdigest()

    async def get(self, token: str) -> int | None:
        try:
            value = await self._redis.get(self.key(token))
        except _ERRORS_TO_CATCH as exc:
            log.warning("token cache unavailable (%s); asking the user service", exc)
            return None
        return None if value is None else int(value)

    async def put(self, token: str, user_id: int, expires_at: float) -> None:
        ttl = min(self._max_seconds, expires_at - time.time())
        if ttl <= 0.001:
            return
        try:
            await self._redis.set(self.key(token), str(user_id), px=max(1, int(ttl * 1000)))
        except _ERRORS_TO_CATCH as exc:
            log.warning("token cache unavailable (%s); not caching", exc)


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, users: users_pb2_grpc.UserServiceAsyncStub, cache: TokenCache) -> None:
        self._users = users
        self._cache = cache

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        path = http.path.split("?", 1)[0]
        if request.attributes.context_extensions.get(AUTH_POLICY_KEY) == PUBLIC_POLICY:
            return allowed(None)
        outcome = await self._authenticate(http.headers.get("authorization", ""))
        if isinstance(outcome, Denial):
            log.info("%s %s denied: %s", http.method, path, outcome.reason)
            return denied(outcome)
        return allowed(outcome)

    async def _authenticate(self, header: str) -> int | Denial:
        if not header.strip():
            return _unauthenticated(
                "authentication required: send Authorization: Bearer <token>", "TOKEN_MISSING", None
            )
        match = _BEARER.fullmatch(header.strip())
        if match is None:
            return _unauthenticated(
                "the Authorization header is not a bearer token", "TOKEN_MALFORMED", "invalid_request"
            )
        token = match.group(1)
        cached = await self._cache.get(token)
        if cached is not None:
            return cached
        try:
            response = await self._users.ValidateToken(users_pb2.ValidateTokenRequest(token=token))
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                reason = _error_reason(error) or "TOKEN_INVALID"
                return _unauthenticated(error.details() or "the token is not valid", reason, "invalid_token")
            log.warning("cannot validate a token: user service %s: %s", error.code().name, error.details())
            return Denial(
                503,
                code_pb2.UNAVAILABLE,
                "authentication is unavailable; try again",
                "AUTH_UNAVAILABLE",
                {"content-type": "application/json"},
            )
        await self._cache.put(token, response.user_id, response.expires_at.ToMicroseconds() / 1e6)
        user_id: int = response.user_id
        return user_id


def allowed(user_id: int | None) -> external_auth_pb2.CheckResponse:
    """OK. Anonymous: drop any client-sent x-chirp-user-id. Signed in: set it, replacing any the
    client sent. (Setting is enough, and removing as well would be wrong: Envoy applies
    headers_to_remove after headers, so it would delete the value just set.)"""
    ok = external_auth_pb2.OkHttpResponse()
    if user_id is None:
        ok.headers_to_remove.append(USER_ID_HEADER)
    else:
        ok.headers.append(_set_header(USER_ID_HEADER, str(user_id)))
    return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)


def denied(denial: Denial) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=denial.code, message=denial.message),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=denial.http_status),  # type: ignore[arg-type]  # any HTTP code
            headers=[_set_header(name, value) for name, value in denial.headers.items()],
            body=status_body(denial.code, denial.message, denial.reason),
        ),
    )


def _unauthenticated(message: str, reason: str, bearer_error: str | None) -> Denial:
    challenge = 'Bearer realm="chirp"'
    if bearer_error:
        challenge += f', error="{bearer_error}"'
    return Denial(
        401,
        code_pb2.UNAUTHENTICATED,
        message,
        reason,
        {"www-authenticate": challenge, "content-type": "application/json"},
    )


def _set_header(name: str, value: str) -> base_pb2.HeaderValueOption:
    # `append: false` is what every Envoy version honours; append_action says the same to newer ones.
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append=wrappers_pb2.BoolValue(value=False),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def _error_reason(error: grpc.aio.AioRpcError) -> str | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an AioRpcError is a grpc.Call here
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return None
