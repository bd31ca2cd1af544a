"""The composition root of a whole Chirp stack in one process: PostgreSQL (embedded unless
CHIRP_DATABASE_URL is set) and the three services. Used by `chirp up` and by the tests."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from chirp_core.embedded_pg import EmbeddedPostgres
from chirp_core.grpc_server import RunningServer
from chirp_core.settings import Settings

log = logging.getLogger("chirp.stack")
EMBEDDED_DATABASE = "chirp"


@dataclass
class Stack:
    settings: Settings
    database_url: str
    servers: dict[str, RunningServer] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None

    def address(self, service: str) -> str:
        return f"{self.settings.host}:{self.servers[service].port}"

    async def stop(self) -> None:
        """Stop in the reverse order of start: the timeline first, PostgreSQL last."""
        for name in reversed(list(self.servers)):
            await self.servers.pop(name).stop(self.settings.shutdown_grace_seconds)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
            self.postgres = None


async def start_postgres(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    postgres = EmbeddedPostgres(settings.data_dir, port=settings.embedded_postgres_port, host=settings.host)
    await asyncio.to_thread(postgres.start)
    url = await asyncio.to_thread(postgres.create_database, EMBEDDED_DATABASE)
    return url, postgres


async def start_stack(settings: Settings) -> Stack:
    """Start everything; on a failure part-way, stop what was started and re-raise."""
    from graph_svc.server import start as start_graph
    from timeline_svc.server import start as start_timeline
    from tweets_svc.server import start as start_tweets

    database_url, postgres = await start_postgres(settings)
    stack = Stack(settings, database_url, postgres=postgres)
    try:
        stack.servers["graph"] = await start_graph(settings, database_url, settings.graph_port)
        stack.servers["tweets"] = await start_tweets(settings, database_url, settings.tweets_port)
        upstreams = settings.with_changes(
            graph_addr=stack.address("graph"), tweets_addr=stack.address("tweets")
        )
        stack.servers["timeline"] = await start_timeline(upstreams, settings.timeline_port)
    except BaseException:
        await stack.stop()
        raise
    return stack
