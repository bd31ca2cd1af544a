"""Request builders shared by the edge service tests."""

from __future__ import annotations

from chirp_envoy_api.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from chirp_envoy_api.envoy.service.ratelimit.v3 import rls_pb2

Code = rls_pb2.RateLimitResponse.Code


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
