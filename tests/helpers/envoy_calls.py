"""Request builders and Envoy's reading of responses, shared by the edge service tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chirp_envoy_api.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from chirp_envoy_api.envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2
from edge_proxy.authz import AUTH_POLICY_KEY, PUBLIC_POLICY

Code = rls_pb2.RateLimitResponse.Code


def check_request(
    method: str, path: str, headers: Mapping[str, str] | None = None, *, public: bool = False
) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy's ext_authz filter sends it; `public` as from a route that Envoy's
    config marks public (its per-route context extension)."""
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=method, path=path, headers=dict(headers or {})
    )
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http),
            context_extensions={AUTH_POLICY_KEY: PUBLIC_POLICY} if public else {},
        )
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def upstream_headers(response: external_auth_pb2.CheckResponse, headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers Envoy sends upstream after an OK CheckResponse: first `headers`
    (append false or OVERWRITE_IF_EXISTS_OR_ADD replaces), then `headers_to_remove`, in Envoy's order."""
    result = {name.lower(): value for name, value in headers.items()}
    for option in response.ok_response.headers:
        key = option.header.key.lower()
        append = option.append.value if option.HasField("append") else option.append_action == 0
        if append and key in result:
            result[key] = f"{result[key]},{option.header.value}"
        else:
            result[key] = option.header.value
    for name in response.ok_response.headers_to_remove:
        result.pop(name.lower(), None)
    return result


def denied_body(response: external_auth_pb2.CheckResponse) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.denied_response.body)
    return body


def denied_headers(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    return {o.header.key.lower(): o.header.value for o in response.denied_response.headers}


def rate_limit_request(*descriptors: tuple[tuple[str, str], ...], hits: int = 0) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(
        domain="chirp",
        descriptors=[
            ratelimit_pb2.RateLimitDescriptor(
                entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in descriptor]
            )
            for descriptor in descriptors
        ],
        hits_addend=hits,
    )
