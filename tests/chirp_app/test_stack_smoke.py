"""The stack starts in-process, every service reports SERVING, and unbuilt RPCs are UNIMPLEMENTED."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chirp_app.stack import Stack


async def test_every_service_reports_serving(stack: Stack) -> None:
    for name in stack.servers:
        async with grpc.aio.insecure_channel(stack.address(name)) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_every_service_answers_reflection(stack: Stack) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    expected = {
        "graph": {"chirp.users.v1.UserService", "chirp.graph.v1.GraphService"},
        "tweets": {"chirp.tweets.v1.TweetService"},
        "timeline": {"chirp.timeline.v1.TimelineService"},
    }
    for name, services in expected.items():
        # The reflection client is synchronous; run it off the event loop that serves the stack.
        def listed(address: str = stack.address(name)) -> set[str]:
            with grpc.insecure_channel(address) as channel:
                return set(ProtoReflectionDescriptorDatabase(channel).get_services())

        found = await asyncio.to_thread(listed)
        assert services <= found, name
        assert "grpc.health.v1.Health" in found
