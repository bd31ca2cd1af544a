from __future__ import annotations

import psycopg

from chirp_core.db import migrate


async def test_migrations_are_versioned_and_idempotent(database_url: str) -> None:
    # The session's database is already migrated by the stack; running again applies nothing.
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS tweets")
    first = await migrate(database_url, "tweets", "tweets_svc.migrations")
    second = await migrate(database_url, "tweets", "tweets_svc.migrations")
    assert second == []
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM tweets.schema_migrations ORDER BY 1")]
    assert versions and versions == sorted(versions)
    assert set(first) <= set(versions)
