"""Composition root of the timeline service."""

from __future__ import annotations

import grpc

from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp_core.grpc_server import RunningServer, start_server
from chirp_core.settings import Settings


async def start(settings: Settings, port: int) -> RunningServer:
    def register(server: grpc.aio.Server) -> list[str]:
        timeline_pb2_grpc.add_TimelineServiceServicer_to_server(
            timeline_pb2_grpc.TimelineServiceServicer(), server
        )
        return [timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name]

    return await start_server("timeline", f"{settings.host}:{port}", register)
