"""Fixtures for the SDK tests: the gateway of tests/edge in front of the in-process stack,
and logged-in clients for fresh accounts."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
from chirp_client import AsyncClient, User

from tests.edge.conftest import Edge, edge  # noqa: F401

PASSWORD = "correct horse battery"

_handles = itertools.count()


def new_handle(prefix: str = "sdk") -> str:
    """A handle no other test uses: 3 to 30 characters of [a-z0-9_]."""
    return f"{prefix}{next(_handles)}_{uuid.uuid4().hex[:8]}"


# tests/edge/limits.yaml allows each user 5 new tweets a minute: no test here posts more
# than that as one user.


@pytest_asyncio.fixture(loop_scope="session")
async def base_url(edge: Edge) -> str:  # noqa: F811
    return edge.url


class Account(AsyncClient):
    """An AsyncClient logged in as `user`."""

    user: User

    @property
    def id(self) -> int:
        return self.user.user_id


NewUser = Callable[[], Awaitable[Account]]


@pytest_asyncio.fixture(loop_scope="session")
async def new_user(base_url: str) -> AsyncIterator[NewUser]:
    """Sign a fresh account up and return a client logged in as it."""
    clients: list[Account] = []

    async def make() -> Account:
        client = Account(base_url)
        clients.append(client)
        handle = new_handle()
        client.user = await client.sign_up(handle, PASSWORD, display_name=handle.title())
        await client.log_in(handle, PASSWORD)
        return client

    yield make
    for client in clients:
        await client.close()
