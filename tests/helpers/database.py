"""Straight to PostgreSQL, past the services: what a test checks in the tables themselves."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg


async def query(database_url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement directly against the database; the rows it returns, if any."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(statement.encode(), params)
        return await cur.fetchall() if cur.description else []


async def outbox(database_url: str, schema: str) -> list[tuple[str, int, dict[str, Any]]]:
    """A service's outbox rows, oldest first: (event type, aggregate ID, payload)."""
    rows = await query(
        database_url, f"SELECT event_type, aggregate_id, payload FROM {schema}.outbox ORDER BY id"
    )
    return [(r[0], r[1], r[2]) for r in rows]


@asynccontextmanager
async def own_database(server_url: str, label: str) -> AsyncIterator[str]:
    """A database of its own on the server (its URL), dropped at the end."""
    name = f"chirp_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    finally:
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
