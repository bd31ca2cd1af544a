"""Straight to PostgreSQL, past the services: what a test checks in the tables themselves."""

from __future__ import annotations

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
