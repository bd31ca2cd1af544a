"""Fixtures for the SDK tests: the gateway of tests/e2e in front of the in-process stack,
and logged-in clients for fresh accounts."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
from chirp_client import AsyncClient, User

from tests.e2e.conftest import Edge, edge  # noqa: F401
from tests.helpers.rest import PASSWORD, new_handle

_handles = itertools.count()


# tests/e2e/limits.yaml allows each user 5 new tweets a minute: no test here posts more
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
        handle = new_handle("sdk")
        client.user = await client.sign_up(handle, PASSWORD, display_name=handle.title())
        await client.log_in(handle, PASSWORD)
        return client

    yield make
    for client in clients:
        await client.close()
