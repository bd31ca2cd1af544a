"""TimelineService over gRPC: request in, one call to the domain, response out.

GetHomeTimeline answers with the response's wire bytes, built from the cached tweets' bytes
(convert.home_timeline_response): server.py registers it with a serializer that sends them as they
are, so a warm read decodes and encodes no tweet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp_core.rpc import caller_id
from timeline_svc.convert import home_timeline_response, tweet_message
from timeline_svc.service import TimelineService

Context = grpc.aio.ServicerContext[Any, Any]


class TimelineServicer(timeline_pb2_grpc.TimelineServiceServicer):
    def __init__(self, service: TimelineService) -> None:
        self._service = service

    async def GetHomeTimeline(  # type: ignore[override]  # the response's bytes (see above)
        self, request: timeline_pb2.GetHomeTimelineRequest, context: Context
    ) -> bytes:
        page = await self._service.home_timeline(
            caller_id(context), request.user_id, request.limit, request.cursor
        )
        return home_timeline_response(page.tweets, page.next_cursor)

    async def GetUserTimeline(
        self, request: timeline_pb2.GetUserTimelineRequest, context: Context
    ) -> timeline_pb2.GetUserTimelineResponse:
        page = await self._service.user_timeline(request.user_id, request.limit, request.cursor)
        return timeline_pb2.GetUserTimelineResponse(
            tweets=[tweet_message(t) for t in page.tweets], next_cursor=page.next_cursor
        )

    async def StreamHomeTimeline(
        self, request: timeline_pb2.StreamHomeTimelineRequest, context: Context
    ) -> AsyncIterator[timeline_pb2.StreamHomeTimelineResponse]:
        tweets = await self._service.open_home_stream(caller_id(context), request.user_id, request.since_id)
        # Headers go out once the starting point is fixed: a client that has them misses nothing.
        await context.send_initial_metadata(())
        async for tweet in tweets:
            yield timeline_pb2.StreamHomeTimelineResponse(tweet=tweet_message(tweet))
