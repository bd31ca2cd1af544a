"""Composition root of the timeline service."""

from __future__ import annotations

import grpc

from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.rpc import downstream_channel
from chirp_core.settings import Settings
from timeline_svc.pull import PullTimeline
from timeline_svc.service import TimelineService
from timeline_svc.servicer import TimelineServicer
from timeline_svc.upstreams import GrpcFollowGraph, GrpcTweetStore, GrpcUserDirectory


async def start(settings: Settings, port: int) -> RunningServer:
    timeout = settings.default_rpc_timeout_seconds
    graph_channel = downstream_channel(settings.graph_target, timeout)
    tweets_channel = downstream_channel(settings.tweets_target, timeout)
    tweets = GrpcTweetStore(tweets_channel)
    service = TimelineService(
        PullTimeline(GrpcFollowGraph(graph_channel), tweets),
        GrpcUserDirectory(graph_channel),
        tweets,
        poll_seconds=settings.stream_poll_seconds,
    )

    def register(server: grpc.aio.Server) -> list[str]:
        timeline_pb2_grpc.add_TimelineServiceServicer_to_server(TimelineServicer(service), server)
        return [timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name]

    async def close_channels() -> None:
        await graph_channel.close(None)
        await tweets_channel.close(None)

    try:
        running = await start_server("timeline", f"{settings.host}:{port}", register)
    except BaseException:
        await close_channels()
        raise
    running.on_stop.append(close_channels)
    return running
