"""The stack starts in-process, every service reports SERVING, and unbuilt RPCs are UNIMPLEMENTED."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chirp_core.stack import Stack


async def test_every_service_reports_serving(stack: Stack) -> None:
    for name in stack.servers:
        async with grpc.aio.insecure_channel(stack.address(name)) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
