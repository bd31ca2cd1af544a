"""A client's mistake is logged once, at INFO, with no traceback; a server fault at ERROR with one.
Against the real services (the in-process stack), and one small server for the fault."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
import pytest_asyncio

from chirp.timeline.v1 import timeline_pb2, timeline_pb2_grpc
from chirp.users.v1 import users_pb2
from chirp_app.stack import Stack
from chirp_core.errors import InvalidArgument
from chirp_core.rpc import ServerInterceptor
from tests.helpers.api import Api, as_user, rpc_error

NO_SUCH_USER = 987_654_321


def _chirp_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the request handling (Chirp's RPC layer and gRPC) logged at INFO or above, and any
    error or traceback from anywhere. (Background tasks may warn meanwhile: the tests empty the
    database under them.)"""
    return [
        r
        for r in caplog.records
        if (r.levelno >= logging.INFO and r.name.startswith(("chirp.rpc", "grpc")))
        or r.levelno >= logging.ERROR
        or r.exc_info
    ]


async def _logged(
    caplog: pytest.LogCaptureFixture, call: Awaitable[Any]
) -> tuple[grpc.aio.AioRpcError, list[logging.LogRecord]]:
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    error = await rpc_error(call)
    return error, _chirp_records(caplog)


def _once_at_info(records: list[logging.LogRecord], method: str, code: str) -> None:
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.INFO, records[0].getMessage())], (
        records
    )
    record = records[0]
    assert method in record.getMessage() and code in record.getMessage(), record.getMessage()
    assert record.exc_info is None and record.exc_text is None


async def test_not_found_is_one_info_line(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    error, records = await _logged(caplog, api.users.GetUser(users_pb2.GetUserRequest(user_id=NO_SUCH_USER)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    _once_at_info(records, "GetUser", "NOT_FOUND")


async def test_a_client_error_from_a_downstream_service_is_logged_once(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """The timeline service asks the graph service for the user: one line, the timeline's."""
    me = await api.new_user()
    request = timeline_pb2.GetUserTimelineRequest(user_id=NO_SUCH_USER)
    error, records = await _logged(
        caplog, api.timeline.GetUserTimeline(request, metadata=as_user(me.user_id))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    _once_at_info(records, "GetUserTimeline", "NOT_FOUND")


async def test_a_string_field_that_is_not_utf8_is_invalid_argument_naming_it(
    api: Api, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """What Envoy's transcoder sends for ?cursor=%FF: not a message Python's protobuf will parse."""
    me = await api.new_user()
    good = timeline_pb2.GetHomeTimelineRequest(user_id=me.user_id, cursor="x").SerializeToString()
    bad = good.replace(b"\x1a\x01x", b"\x1a\x02\xff\xfe")
    async with grpc.aio.insecure_channel(stack.address("timeline")) as channel:
        method = channel.unary_unary(
            "/chirp.timeline.v1.TimelineService/GetHomeTimeline",
            request_serializer=None,
            response_deserializer=timeline_pb2.GetHomeTimelineResponse.FromString,
        )
        error, records = await _logged(caplog, method(bad, metadata=as_user(me.user_id)))
        # A valid request to the same method still works.
        page = await timeline_pb2_grpc.TimelineServiceStub(channel).GetHomeTimeline(
            timeline_pb2.GetHomeTimelineRequest(user_id=me.user_id), metadata=as_user(me.user_id)
        )
    assert list(page.tweets) == []
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "cursor: is not valid UTF-8"
    _once_at_info(records, "GetHomeTimeline", "INVALID_ARGUMENT")


@pytest_asyncio.fixture(loop_scope="session")
async def faulty() -> AsyncIterator[grpc.aio.Channel]:
    """A server with Chirp's interceptor and two methods: one raises a client error, one a bug."""

    async def refuse(request: bytes, context: Any) -> bytes:
        raise InvalidArgument("name", "is required")

    async def crash(request: bytes, context: Any) -> bytes:
        raise RuntimeError("a bug")

    handlers = {
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
    }
    server = grpc.aio.server(interceptors=[ServerInterceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Faulty", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def test_only_a_server_fault_is_an_error_with_a_traceback(
    faulty: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    error, records = await _logged(caplog, faulty.unary_unary("/test.Faulty/Refuse")(b""))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    _once_at_info(records, "Refuse", "INVALID_ARGUMENT")

    error, records = await _logged(caplog, faulty.unary_unary("/test.Faulty/Crash")(b""))
    assert error.code() == grpc.StatusCode.INTERNAL and error.details() == "internal error"
    assert [r.levelno for r in records] == [logging.ERROR], records
    assert records[0].exc_info is not None and "Traceback" in caplog.text and "a bug" in caplog.text
