"""Envoy's configuration, written from the contracts and the settings: the one source of the
public route table, its per-route auth and rate-limit policy, and the filters in front.

    config = envoy_bootstrap(EnvoyOptions.from_settings(settings, descriptor_path))
    yaml_text = render(config)

`chirp up` writes it at each start (chirp_app.envoy_process); `chirp envoy-config` prints the
production form (hosts graph, tweets, timeline, edge by DNS), which is edge_proxy/envoy.yaml.

A request passes: header_mutation (on the way out: drops grpc-* and x-envoy-* headers) -> health
check (/healthz) -> grpc_web -> jwt_authn (the bearer token, a JWT checked against the graph
service's published keys -> x-chirp-user-id and x-chirp-session-id, which strip_identity removed
from the client's request first; a public route needs no token) -> local_ratelimit (reads: a token
bucket per user, in Envoy) -> ratelimit (writes and sign-ins: the route's descriptors, to the
rate-limit service) -> grpc_json_transcoder (REST -> gRPC; gRPC and gRPC-Web calls pass as they
are) -> the media cache (/media/ only) -> router. Envoy's own
error answers are rewritten into google.rpc.Status JSON (local_reply_config); answers our
services or the rate-limit service wrote are left as they are.
"""

from __future__ import annotations

import ipaddress
import math
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chirp_core.rpc import ERROR_DOMAIN, ON_BEHALF_OF_HEADER, SESSION_ID_HEADER, USER_ID_HEADER
from chirp_core.settings import Settings, target_addresses
from edge_proxy.http_rules import HttpRoute, http_routes
from edge_proxy.limits import (
    DEFAULT_LIMITS_FILE,
    DOMAIN,
    GENERIC_KEY,
    MAX_READ_BUCKETS,
    PER_USER_RPCS,
    READS,
    SIGN_IN,
    SIGN_IN_RPCS,
    USER_ID,
    WRITES,
    ReadLimit,
    is_read,
    limits_file,
    load_limits,
)

TYPE = "type.googleapis.com/"
# Which upstream cluster serves each service of the contracts.
CLUSTER_OF_SERVICE: Mapping[str, str] = {
    "chirp.users.v1.UserService": "graph",
    "chirp.graph.v1.GraphService": "graph",
    "chirp.tweets.v1.TweetService": "tweets",
    "chirp.timeline.v1.TimelineService": "timeline",
}
# The rate-limit service (edge_proxy.server).
EDGE_CLUSTER = "edge"
# The access tokens' public keys (graph_svc.jwks_server), read by jwt_authn and served publicly.
JWKS_CLUSTER = "jwks"
JWKS_PATH = "/.well-known/jwks.json"
MEDIA_CLUSTER = "media"
HEALTH_PATH = "/healthz"
PING_PATH = "/ping"
CACHE_FILTER = "envoy.filters.http.cache_v2"
MEDIA_PREFIX = "/media/"
# The built web app Envoy serves at / (clients/web builds into it), and its largest file.
WEB_ROOT = Path(__file__).with_name("webapp")
MAX_WEB_FILE_BYTES = 8 * 1024 * 1024
# The OpenAPI document of the REST API (edge_proxy.openapi; scripts/protos.py generates the file).
OPENAPI_PATH = "/openapi.json"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
# Calls that need no bearer token: sign-up, log-in and refresh. Every other call needs a valid one.
PUBLIC_RPCS = SIGN_IN_RPCS
# Response headers no REST client should see. The router and the rate-limit filter are also told
# to add no x-envoy-* header of their own; the health check filter adds one regardless.
HIDDEN_RESPONSE_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "grpc-accept-encoding",
    "x-envoy-upstream-service-time",
    "x-envoy-ratelimited",
    "x-envoy-upstream-healthchecked-cluster",
)
HEADER_MUTATION = "envoy.filters.http.header_mutation"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
# A second header_mutation filter, for requests only, never turned off on a route: it removes the
# identity headers a client sent before jwt_authn sets them from a verified token.
STRIP_IDENTITY = "chirp.strip_identity"
IDENTITY_HEADERS = (USER_ID_HEADER, SESSION_ID_HEADER, ON_BEHALF_OF_HEADER)
JWT_PROVIDER = "chirp"
# The jwt_authn requirement of every non-public RPC route: a valid token of JWT_PROVIDER.
SIGNED_IN = "signed_in"
JWT_CLOCK_SKEW_SECONDS = 10
JWT_CACHE_SIZE = 4096
LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"
# Route metadata naming a route's budget in Envoy's local rate limit (reads): the local filter's
# descriptor is (generic_key: <budget>, user_id: <x-chirp-user-id>), and a route without it has none.
BUDGET_METADATA = "chirp.rate_limit"
HEADER_CHECK = "envoy.filters.http.lua"
# Header values hold visible ASCII, spaces and tabs, and a request ID visible ASCII only: the
# services get headers as gRPC metadata, which holds no more (and tags log lines with the ID).
# Envoy's codec already refuses NUL, CR and LF; anything else is 400 here, before any service.
HEADER_CHECK_LUA = """\
function envoy_on_request(handle)
  for name, value in pairs(handle:headers()) do
    if string.find(value, "[^\\t -~]") or (name == "x-request-id" and string.find(value, "[^!-~]")) then
      handle:respond({[":status"] = "400"}, "header " .. name .. ": only printable ASCII is allowed")
      return
    end
  end
end
"""
# gRPC code Envoy's own error answers carry, by their HTTP status (the inverse of the transcoder's
# mapping; 405 and 413 have no gRPC twin and are read as UNIMPLEMENTED / RESOURCE_EXHAUSTED).
LOCAL_REPLY_CODES: Mapping[int, tuple[int, str]] = {
    400: (3, "INVALID_ARGUMENT"),
    401: (16, "UNAUTHENTICATED"),
    403: (7, "PERMISSION_DENIED"),
    404: (5, "NOT_FOUND"),
    405: (12, "METHOD_NOT_ALLOWED"),
    408: (4, "REQUEST_TIMEOUT"),
    413: (8, "BODY_TOO_LARGE"),
    429: (8, "RATE_LIMITED"),
    431: (3, "HEADERS_TOO_LARGE"),
    500: (13, "INTERNAL"),
    502: (14, "UPSTREAM_UNAVAILABLE"),
    503: (14, "UPSTREAM_UNAVAILABLE"),
    504: (4, "UPSTREAM_TIMEOUT"),
}


@dataclass(frozen=True)
class Upstream:
    """Where a cluster's endpoints are: host:port pairs (IP addresses or DNS names, every record of
    a name an endpoint), each a server of the same service: the worker processes of `chirp up
    --processes N`, or the replicas of a deployment."""

    name: str
    addresses: tuple[tuple[str, int], ...]
    grpc: bool = True


@dataclass(frozen=True)
class EnvoyOptions:
    """Everything the config depends on. `from_settings` is the one mapping from Settings."""

    listen_host: str
    listen_port: int
    admin_host: str
    admin_port: int
    descriptor_path: str
    upstreams: tuple[Upstream, ...]
    rate_limiting: bool = True
    # The per-user read budgets Envoy enforces itself (the limits file's `reads` entry); empty: none.
    read_limits: tuple[ReadLimit, ...] = ()
    # How long the ratelimit filter waits for the rate-limit service before letting a write through.
    rate_limit_timeout_seconds: float = 0.05
    max_body_bytes: int = 64 * 1024
    upstream_timeout_seconds: float = 10.0
    stream_idle_timeout_seconds: float = 300.0
    request_headers_timeout_seconds: float = 10.0
    request_timeout_seconds: float = 60.0
    idle_timeout_seconds: float = 300.0
    health_check_interval_seconds: float = 5.0
    # Empty: Envoy's standard output.
    access_log_path: str = ""
    max_connections: int = 50_000
    # The built web app served at / (empty: none).
    web_root: str = ""
    # The OpenAPI document served at OPENAPI_PATH (empty: none).
    openapi_file: str = ""
    media_cache_bytes: int = 1024 * 1024 * 1024
    media_cache_dir: str = "/var/cache/chirp/media"
    # The access tokens' `iss`, and how long Envoy keeps the JWKS before fetching it again.
    jwt_issuer: str = "chirp"
    jwks_cache_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings, descriptor_path: str, run_dir: str = "") -> EnvoyOptions:
        upstreams = [
            Upstream("graph", target_addresses(settings.graph_target)),
            Upstream("tweets", target_addresses(settings.tweets_target)),
            Upstream("timeline", target_addresses(settings.timeline_target)),
            Upstream(EDGE_CLUSTER, target_addresses(settings.auth_target)),
            Upstream(JWKS_CLUSTER, target_addresses(settings.jwks_target), grpc=False),
        ]
        if settings.media_store == "local":
            upstreams.append(
                Upstream(MEDIA_CLUSTER, target_addresses(settings.media_store_target), grpc=False)
            )
        return cls(
            listen_host=settings.host,
            listen_port=settings.http_port,
            admin_host=settings.host,
            admin_port=settings.envoy_admin_port,
            descriptor_path=descriptor_path,
            upstreams=tuple(upstreams),
            rate_limiting=limits_file(settings) is not None,
            read_limits=_read_limits(settings),
            rate_limit_timeout_seconds=settings.rate_limit_timeout_ms / 1000,
            max_body_bytes=settings.max_body_bytes,
            upstream_timeout_seconds=settings.upstream_timeout_seconds,
            stream_idle_timeout_seconds=settings.envoy_stream_idle_timeout_seconds,
            request_headers_timeout_seconds=settings.envoy_request_headers_timeout_seconds,
            request_timeout_seconds=settings.envoy_request_timeout_seconds,
            idle_timeout_seconds=settings.envoy_idle_timeout_seconds,
            health_check_interval_seconds=settings.envoy_health_check_seconds,
            access_log_path=settings.envoy_access_log,
            media_cache_bytes=settings.media_cache_bytes,
            web_root=_web_root(settings.web_root),
            openapi_file=str(OPENAPI_FILE) if OPENAPI_FILE.is_file() else "",
            media_cache_dir=str(Path(run_dir or settings.data_dir / "envoy") / "media-cache"),
            jwt_issuer=settings.jwt_issuer,
            jwks_cache_seconds=settings.jwks_cache_seconds,
        )

    @property
    def media(self) -> bool:
        return any(u.name == MEDIA_CLUSTER for u in self.upstreams)


def production_options() -> EnvoyOptions:
    """The deployment of deploy/docker-compose.yml: every service by its DNS name."""
    return EnvoyOptions(
        listen_host="0.0.0.0",
        listen_port=8080,
        admin_host="127.0.0.1",
        admin_port=9901,
        descriptor_path="/etc/chirp/chirp.pb",
        health_check_interval_seconds=1.0,
        upstreams=(
            Upstream("graph", (("graph", 50051),)),
            Upstream("tweets", (("tweets", 50052),)),
            Upstream("timeline", (("timeline", 50053),)),
            Upstream(EDGE_CLUSTER, (("edge", 50054),)),
            Upstream(JWKS_CLUSTER, (("graph", 50050),), grpc=False),
        ),
        openapi_file="/etc/chirp/openapi.json",
        read_limits=load_limits(DEFAULT_LIMITS_FILE).reads,
    )


def _read_limits(settings: Settings) -> tuple[ReadLimit, ...]:
    path = limits_file(settings)
    return () if path is None else load_limits(path).reads


def _web_root(configured: Path | None) -> str:
    """settings.web_root, else the packaged build when there is one."""
    root = configured or WEB_ROOT
    return str(root) if (root / "index.html").is_file() else ""


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


# Routes.


def _user_action() -> dict[str, Any]:
    return {"request_headers": {"header_name": USER_ID_HEADER, "descriptor_key": USER_ID}}


def rate_limit_actions(rpc: str) -> list[dict[str, Any]]:
    """A write route's rate_limits, for the rate-limit service: sign-up and log-in per client IP;
    every other write per user, plus a budget of its own for PER_USER_RPCS. The descriptors match
    edge_proxy/ratelimit.yaml. (A read route has none: Envoy limits reads itself, read_limit_config.)"""

    def generic(value: str) -> dict[str, Any]:
        return {"generic_key": {"descriptor_value": value}}

    if rpc in SIGN_IN_RPCS:
        return [{"actions": [generic(value), {"remote_address": {}}]} for value in (SIGN_IN, WRITES)]
    own = [PER_USER_RPCS[rpc]] if rpc in PER_USER_RPCS else []
    return [{"actions": [generic(value), _user_action()]} for value in (*own, WRITES)]


def _method_is(verb: str) -> list[dict[str, Any]]:
    return [{"name": ":method", "string_match": {"exact": verb}}]


def _set_headers(headers: Mapping[str, str]) -> list[dict[str, Any]]:
    """response_headers_to_add entries that replace any header of the same name."""
    return [
        {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for key, value in headers.items()
    ]


def _auth_policy(route: dict[str, Any], public: bool) -> dict[str, Any]:
    """A public route takes no token (jwt_authn off); any other needs a valid one. Either way the
    identity headers a client sent are gone (STRIP_IDENTITY)."""
    if public:
        return _filters_off(route, JWT_AUTHN)
    route.setdefault("typed_per_filter_config", {})[JWT_AUTHN] = {
        "@type": TYPE + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
        "requirement_name": SIGNED_IN,
    }
    return route


def _filter_state(disabled: bool) -> dict[str, Any]:
    return {"@type": TYPE + "envoy.config.route.v3.FilterConfig", "disabled": disabled}


def _filters_off(route: dict[str, Any], *names: str) -> dict[str, Any]:
    route.setdefault("typed_per_filter_config", {}).update({name: _filter_state(True) for name in names})
    return route


def _rpc_route(name: str, match: dict[str, Any], http: HttpRoute, options: EnvoyOptions) -> dict[str, Any]:
    """A route to an RPC's cluster with its policy: a deadline (none, and no idle limit, for a live
    stream, for as long as the client listens), its rate limits (a read: the per-user budget Envoy
    keeps itself; a write: the rate-limit service's descriptors), public or not."""
    action: dict[str, Any] = {"cluster": CLUSTER_OF_SERVICE[http.service]}
    if http.server_streaming:
        action["timeout"] = "0s"
        action["idle_timeout"] = "0s"
    else:
        action["timeout"] = _duration(options.upstream_timeout_seconds)
    read = is_read(http.verb) and http.rpc not in SIGN_IN_RPCS
    if options.rate_limiting and not read:
        action["rate_limits"] = rate_limit_actions(http.rpc)
    route: dict[str, Any] = {"name": name, "match": match, "route": action}
    if options.rate_limiting and read and options.read_limits:
        route["metadata"] = {"filter_metadata": {BUDGET_METADATA: {"budget": READS}}}
    return _auth_policy(route, http.rpc in PUBLIC_RPCS)


def api_route(http: HttpRoute, options: EnvoyOptions) -> dict[str, Any]:
    """The route of one REST binding, named after its RPC (the transcoder keeps that route:
    match_incoming_request_route)."""
    match = {"safe_regex": {"regex": http.regex}, "headers": _method_is(http.verb)}
    route = _rpc_route(http.rpc[1:], match, http, options)
    if http.server_streaming:
        route["response_headers_to_add"] = _set_headers({"cache-control": "no-cache"})
    return route


def grpc_route(http: HttpRoute, options: EnvoyOptions) -> dict[str, Any]:
    """The same RPC called as gRPC or gRPC-Web (POST /pkg.Service/Method), with the same policy."""
    match = {"path": http.rpc, "headers": _method_is("POST")}
    # A gRPC or gRPC-Web client needs the grpc-* headers: they carry the call's status.
    return _filters_off(_rpc_route(f"grpc:{http.rpc[1:]}", match, http, options), HEADER_MUTATION)


def _direct(
    name: str, match: dict[str, Any], status: int, body: dict[str, str] | None, headers: Mapping[str, str]
) -> dict[str, Any]:
    """An answer Envoy gives itself, with no token asked for."""
    response: dict[str, Any] = {"status": status}
    if body is not None:
        response["body"] = body
    route: dict[str, Any] = {"name": name, "match": match, "direct_response": response}
    if headers:
        route["response_headers_to_add"] = _set_headers(headers)
    return _filters_off(route, JWT_AUTHN)


def _status_route(
    name: str, match: dict[str, Any], status: int, message: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An error Envoy answers itself; local_reply_config turns `message` into a Status JSON body."""
    return _direct(name, match, status, {"inline_string": message}, headers or {})


def web_routes(web_root: str) -> list[dict[str, Any]]:
    """The built web app (clients/web), one route a file, answered by Envoy from the file: `/` is
    index.html (never cached: it names the current assets), the hashed assets are immutable."""
    root = Path(web_root)
    table: list[dict[str, Any]] = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        path = "/" if relative == "index.html" else "/" + relative
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "image/svg+xml"):
            content_type += "; charset=utf-8"
        caching = "no-cache" if path == "/" else "public, max-age=31536000, immutable"
        headers = {"content-type": content_type, "cache-control": caching}
        match = {"path": path, "headers": _method_is("GET")}
        table.append(_direct(f"web:{path}", match, 200, {"filename": str(file.resolve())}, headers))
    return table


def routes(options: EnvoyOptions) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    api = http_routes()
    for http in api:
        table.append(api_route(http, options))
    # A path some binding serves, with another method: 405 naming the methods it takes.
    verbs: dict[str, list[str]] = {}
    for http in api:
        verbs.setdefault(http.regex, []).append(http.verb)
    for regex, allowed in verbs.items():
        allow = ", ".join(dict.fromkeys(allowed))
        match = {"safe_regex": {"regex": regex}}
        table.append(
            _status_route(f"wrong-method:{regex}", match, 405, f"allowed: {allow}", {"allow": allow})
        )
    for http in {h.rpc: h for h in api}.values():
        table.append(grpc_route(http, options))
    # Answered by the health_check filter; the route only keeps the path out of the 404.
    table.append(_direct("healthz", {"path": HEALTH_PATH, "headers": _method_is("GET")}, 200, None, {}))
    # Envoy answers alone: what a request costs with no upstream (the benchmark's ceiling).
    ping = {"path": PING_PATH, "headers": _method_is("GET")}
    table.append(_direct("ping", ping, 200, {"inline_string": "{}"}, {"content-type": "application/json"}))
    get_only = [("healthz", HEALTH_PATH), ("ping", PING_PATH)]
    if options.openapi_file:
        openapi = {"path": OPENAPI_PATH, "headers": _method_is("GET")}
        headers = {"content-type": "application/json", "cache-control": "no-cache"}
        table.append(_direct("openapi", openapi, 200, {"filename": options.openapi_file}, headers))
        get_only.append(("openapi", OPENAPI_PATH))
    table.append(jwks_route())
    get_only.append(("jwks", JWKS_PATH))
    for name, path in get_only:
        table.append(
            _status_route(f"{name}-wrong-method", {"path": path}, 405, "allowed: GET", {"allow": "GET"})
        )
    if options.web_root:
        table.extend(web_routes(options.web_root))
    table.append(_status_route("not-found", {"prefix": "/"}, 404, "no such path"))
    if options.media:
        table = [_filters_off(route, CACHE_FILTER) for route in table]
        table.insert(-1, media_route(options))
    return table


def jwks_route() -> dict[str, Any]:
    """The access tokens' public keys, for anyone who checks a token (no token needed)."""
    route = {
        "name": "jwks",
        "match": {"path": JWKS_PATH, "headers": _method_is("GET")},
        "route": {"cluster": JWKS_CLUSTER, "timeout": "5s"},
    }
    return _filters_off(route, JWT_AUTHN, "envoy.filters.http.grpc_json_transcoder")


def media_route(options: EnvoyOptions) -> dict[str, Any]:
    """The local object store: uploads authorized by their signed policy (no token), downloads
    public and cached (the CDN of one machine)."""
    route = {
        "name": "media",
        "match": {"prefix": MEDIA_PREFIX},
        "route": {"cluster": MEDIA_CLUSTER, "timeout": "300s"},
    }
    return _filters_off(route, JWT_AUTHN, "envoy.filters.http.grpc_json_transcoder")


# Filters.


def http_filters(options: EnvoyOptions) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = [
        {
            # First, so that on the way out it sees every answer last: the transcoder's (which turns gRPC
            # trailers into headers) and the local replies of every filter after it.
            "name": HEADER_MUTATION,
            "typed_config": {
                "@type": TYPE + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {"response_mutations": [{"remove": name} for name in HIDDEN_RESPONSE_HEADERS]},
            },
        },
        {
            "name": STRIP_IDENTITY,
            "typed_config": {
                "@type": TYPE + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {"request_mutations": [{"remove": name} for name in IDENTITY_HEADERS]},
            },
        },
        {
            "name": HEADER_CHECK,
            "typed_config": {
                "@type": TYPE + "envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": HEADER_CHECK_LUA},
            },
        },
        {
            "name": "envoy.filters.http.health_check",
            "typed_config": {
                "@type": TYPE + "envoy.extensions.filters.http.health_check.v3.HealthCheck",
                "pass_through_mode": False,
                "headers": [{"name": ":path", "string_match": {"exact": HEALTH_PATH}}, *_method_is("GET")],
                "cluster_min_healthy_percentages": {
                    u.name: {"value": min_healthy_percent(u)} for u in options.upstreams if u.grpc
                },
            },
        },
        {
            "name": "envoy.filters.http.grpc_web",
            "typed_config": {"@type": TYPE + "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"},
        },
        {
            # Authentication first: no token, no rate-limit budget spent, no transcoding.
            "name": JWT_AUTHN,
            "typed_config": jwt_authn_config(options),
        },
    ]
    if options.rate_limiting and options.read_limits:
        # After authentication, which sets the user header the buckets are keyed on.
        filters.append({"name": LOCAL_RATELIMIT, "typed_config": read_limit_config(options.read_limits)})
    if options.rate_limiting:
        if options.rate_limit_timeout_seconds <= 0:
            raise ValueError("CHIRP_RATE_LIMIT_TIMEOUT_MS must be >= 1")
        filters.append(
            {
                "name": "envoy.filters.http.ratelimit",
                "typed_config": {
                    "@type": TYPE + "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                    "domain": DOMAIN,
                    # Writes only (a read route has no descriptor for it, so no call is made).
                    # Fail open: the rate-limit service (or its Redis) down or slow lets the write
                    # through after this long. Its Redis calls give up after
                    # settings.redis_timeout_ms, so this bound only matters when the service
                    # itself stalls; it must stay small.
                    "timeout": _duration(options.rate_limit_timeout_seconds),
                    "failure_mode_deny": False,
                    "enable_x_ratelimit_headers": "OFF",
                    "disable_x_envoy_ratelimited_header": True,
                    "rate_limit_service": {
                        "grpc_service": {"envoy_grpc": {"cluster_name": EDGE_CLUSTER}},
                        "transport_api_version": "V3",
                    },
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": {
                "@type": TYPE + "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                "proto_descriptor": options.descriptor_path,
                "services": list(CLUSTER_OF_SERVICE),
                "print_options": {
                    "preserve_proto_field_names": True,
                    "always_print_primitive_fields": False,
                    "stream_sse_style_delimited": True,
                },
                "convert_grpc_status": True,
                "match_incoming_request_route": True,
                "max_request_body_size": options.max_body_bytes,
                "request_validation_options": {
                    # The route table is the gate: a path no route serves never gets here.
                    "reject_unknown_method": False,
                    "reject_unknown_query_parameters": True,
                    "reject_binding_body_field_collisions": True,
                },
            },
        }
    )
    if options.media:
        # The CDN of one machine, on the media route only (every other route turns it off: it takes
        # no per-route config); next to the router, as the cache filter wants.
        filters.append(
            {
                "name": CACHE_FILTER,
                "typed_config": cache_config(options),
            }
        )
    filters.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": TYPE + "envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": True,
            },
        }
    )
    return filters


def read_limit_config(limits: tuple[ReadLimit, ...]) -> dict[str, Any]:
    """Envoy's local rate limit for reads: one token bucket per user (a descriptor entry with no
    value makes Envoy keep one per value seen, at most MAX_READ_BUCKETS), on the routes whose
    metadata names the `reads` budget; no default bucket, so any other route passes untouched.
    A refused read is 429 (gRPC: RESOURCE_EXHAUSTED) with Retry-After and x-ratelimit-* headers
    (those on every read), its Status JSON body written by local_reply_config."""
    budget = {
        "metadata": {
            "descriptor_key": GENERIC_KEY,
            "metadata_key": {"key": BUDGET_METADATA, "path": [{"key": "budget"}]},
            "source": "ROUTE_ENTRY",
        }
    }

    def always(key: str) -> dict[str, Any]:
        return {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": key}

    retry_after = max(limit.retry_after_seconds for limit in limits)
    return {
        "@type": TYPE + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": READS,
        "filter_enabled": always("chirp.reads.enabled"),
        "filter_enforced": always("chirp.reads.enforced"),
        "rate_limits": [{"actions": [budget, _user_action()]}],
        "descriptors": [
            {
                "entries": [
                    {"key": GENERIC_KEY, "value": READS},
                    {"key": USER_ID, "value": limit.user_id or ""},
                ],
                "token_bucket": {
                    "max_tokens": limit.tokens,
                    "tokens_per_fill": limit.tokens,
                    "fill_interval": _duration(limit.refill_seconds),
                },
            }
            for limit in limits
        ],
        "max_dynamic_descriptors": MAX_READ_BUCKETS,
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "rate_limited_as_resource_exhausted": True,
        "response_headers_to_add": _set_headers({"retry-after": str(retry_after)}),
    }


def jwt_authn_config(options: EnvoyOptions) -> dict[str, Any]:
    """Access tokens checked by Envoy alone: an EdDSA JWT from the Authorization header, signed by
    a key of the graph service's JWKS, fetched at start (the listener waits for it) and again every
    jwks_cache_seconds in the background. Its sub and sid claims go upstream as the identity
    headers; the token itself does not."""
    return {
        "@type": TYPE + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {
            JWT_PROVIDER: {
                "issuer": options.jwt_issuer,
                "remote_jwks": {
                    "http_uri": {
                        "uri": f"http://{JWKS_CLUSTER}{JWKS_PATH}",
                        "cluster": JWKS_CLUSTER,
                        "timeout": "2s",
                    },
                    "cache_duration": _duration(options.jwks_cache_seconds),
                    "async_fetch": {"failed_refetch_duration": "1s"},
                },
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "forward": False,
                "clock_skew_seconds": JWT_CLOCK_SKEW_SECONDS,
                # Verified tokens are kept (per Envoy worker thread, least recently used out), so
                # a reader's next request skips the signature check; each is still refused once
                # it expires (tests/e2e/test_auth.py).
                "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
                "claim_to_headers": [
                    {"header_name": USER_ID_HEADER, "claim_name": "sub"},
                    {"header_name": SESSION_ID_HEADER, "claim_name": "sid"},
                ],
            }
        },
        "requirement_map": {SIGNED_IN: {"provider_name": JWT_PROVIDER}},
    }


def cache_config(options: EnvoyOptions) -> dict[str, Any]:
    """A file-system cache under the run directory, bounded in size (least recently used out)."""
    return {
        "@type": TYPE + "envoy.extensions.filters.http.cache_v2.v3.CacheV2Config",
        "typed_config": {
            "@type": TYPE
            + "envoy.extensions.http.cache_v2.file_system_http_cache.v3.FileSystemHttpCacheV2Config",
            "manager_config": {"thread_pool": {"thread_count": 1}},
            "cache_path": options.media_cache_dir,
            "create_cache_path": True,
            "max_cache_size_bytes": options.media_cache_bytes,
        },
    }


# jwt_authn's 401s by their response code details (jwt_authn_access_denied{<its message, spaces as
# underscores>}): the ErrorInfo reason and the message the client gets. The last, with no detail,
# takes every other refusal (bad signature, unknown key, alg none, wrong issuer, malformed).
TOKEN_DENIALS: tuple[tuple[str, str, str], ...] = (
    ("Jwt_is_missing", "TOKEN_MISSING", "authentication required: send Authorization: Bearer <access token>"),
    ("Jwt_is_expired", "TOKEN_EXPIRED", "the access token has expired; refresh it (POST /sessions/refresh)"),
    ("", "TOKEN_INVALID", "the access token is not valid (%LOCAL_REPLY_BODY%)"),
)


def token_denials() -> list[dict[str, Any]]:
    """Local reply mappers giving jwt_authn's refusals a google.rpc.Status body with a reason."""
    mappers = []
    for detail, reason, message in TOKEN_DENIALS:
        expression = f"response.code_details.startsWith('jwt_authn_access_denied{{{detail}')"
        body = {
            "code": 16,
            "message": message,
            "details": [{"@type": TYPE + "google.rpc.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN}],
        }
        mappers.append(
            {
                "filter": {
                    "extension_filter": {
                        "name": "envoy.access_loggers.extension_filters.cel",
                        "typed_config": {
                            "@type": TYPE + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                            "expression": expression,
                        },
                    }
                },
                "body_format_override": {"json_format": body, "content_type": "application/json"},
            }
        )
    return mappers


def local_reply_config() -> dict[str, Any]:
    """Envoy's own error answers (no route, bad JSON, body too large, upstream down, rate limited)
    as google.rpc.Status JSON, jwt_authn's 401 ("Jwt is missing", "Jwt is expired", ...) among
    them. The rate-limit service's denials (RL) carry their own JSON body and are kept: the first
    mapper that matches wins. A read refused by Envoy's local rate limit also has flag RL but only
    a plain-text body, so it is matched first (by its response code details) and given its Status
    body here."""
    healthz = {"header_filter": {"header": {"name": ":path", "string_match": {"exact": HEALTH_PATH}}}}

    def status_is(status: int) -> dict[str, Any]:
        value = {"default_value": status, "runtime_key": f"chirp.local_reply.{status}"}
        return {"status_code_filter": {"comparison": {"op": "EQ", "value": value}}}

    def health(status: int, serving: str) -> dict[str, Any]:
        body = {"json_format": {"status": serving}, "content_type": "application/json"}
        return {
            "filter": {"and_filter": {"filters": [healthz, status_is(status)]}},
            "body_format_override": body,
        }

    local_rate_limited = {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": TYPE + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "response.code_details == 'local_rate_limited'",
            },
        }
    }
    reads_limited = {
        "code": 8,
        "message": "rate limit exceeded: reads per user; retry after the Retry-After header's seconds",
        "details": [
            {
                "@type": TYPE + "google.rpc.ErrorInfo",
                "reason": "RATE_LIMITED",
                "domain": ERROR_DOMAIN,
                "metadata": {"limit": "reads per user"},
            }
        ],
    }
    mappers: list[dict[str, Any]] = [
        {
            "filter": local_rate_limited,
            "body_format_override": {"json_format": reads_limited, "content_type": "application/json"},
        },
        {"filter": {"response_flag_filter": {"flags": ["RL"]}}},
        *token_denials(),
        health(200, "SERVING"),
        health(503, "NOT_SERVING"),
    ]
    for status, (code, reason) in LOCAL_REPLY_CODES.items():
        mappers.append(
            {
                "filter": status_is(status),
                "body_format_override": {
                    "json_format": {
                        "code": code,
                        "message": "%LOCAL_REPLY_BODY%",
                        "details": [
                            {
                                "@type": TYPE + "google.rpc.ErrorInfo",
                                "reason": reason,
                                "domain": ERROR_DOMAIN,
                            }
                        ],
                    },
                    "content_type": "application/json",
                },
            }
        )
    return {"mappers": mappers}


def access_log(options: EnvoyOptions) -> list[dict[str, Any]]:
    """One JSON line per request, to a file or (no path) to Envoy's standard output, whatever that
    is: a terminal, a pipe or a socket."""
    if options.access_log_path:
        logger = "envoy.access_loggers.file"
        config: dict[str, Any] = {
            "@type": TYPE + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": options.access_log_path,
        }
    else:
        logger = "envoy.access_loggers.stdout"
        config = {"@type": TYPE + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}
    return [
        {
            "name": logger,
            "typed_config": {
                **config,
                "log_format": {
                    "json_format": {
                        "time": "%START_TIME%",
                        "request_id": "%REQ(X-REQUEST-ID)%",
                        "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
                        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                        "route": "%ROUTE_NAME%",
                        "status": "%RESPONSE_CODE%",
                        "grpc_status": "%GRPC_STATUS_NUMBER%",
                        "flags": "%RESPONSE_FLAGS%",
                        "duration_ms": "%DURATION%",
                        "upstream": "%UPSTREAM_CLUSTER%",
                        "bytes_sent": "%BYTES_SENT%",
                        "user_id": f"%REQ({USER_ID_HEADER.upper()})%",
                    }
                },
            },
        }
    ]


def http_connection_manager(options: EnvoyOptions) -> dict[str, Any]:
    return {
        "@type": TYPE + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "public_http",
        "codec_type": "AUTO",
        # The client address is the peer's (the remote_address rate-limit descriptor).
        "use_remote_address": True,
        "preserve_external_request_id": True,
        "always_set_request_id_in_response": True,
        "stream_idle_timeout": _duration(options.stream_idle_timeout_seconds),
        # Slow clients are cut off (408): the request's headers, and the whole request, must arrive
        # within these. request_timeout ends with the request's last byte, so a live stream's
        # response runs on (its route turns the stream idle timeout off).
        "request_headers_timeout": _duration(options.request_headers_timeout_seconds),
        "request_timeout": _duration(options.request_timeout_seconds),
        "common_http_protocol_options": {
            "idle_timeout": _duration(options.idle_timeout_seconds),
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "local_reply_config": local_reply_config(),
        "access_log": access_log(options),
        "route_config": {
            "name": "chirp",
            "virtual_hosts": [{"name": "chirp", "domains": ["*"], "routes": routes(options)}],
            # The web app's files are answered directly (web_routes); its bundle is larger than the
            # 4 KiB Envoy allows a direct response by default.
            "max_direct_response_body_size_bytes": MAX_WEB_FILE_BYTES,
        },
        "http_filters": http_filters(options),
    }


def cluster(upstream: Upstream, options: EnvoyOptions) -> dict[str, Any]:
    static = all(_is_ip(host) for host, _ in upstream.addresses)
    config: dict[str, Any] = {
        "name": upstream.name,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "2s",
        # Each request to the endpoint with the fewest active requests of two picked at random: a
        # few long-lived HTTP/2 connections per endpoint carry every request, so the choice is
        # made per request, and a slow endpoint gets fewer.
        "lb_policy": "LEAST_REQUEST",
        "outlier_detection": outlier_detection(),
        "load_assignment": {
            "cluster_name": upstream.name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                        for host, port in upstream.addresses
                    ]
                }
            ],
        },
    }
    if upstream.grpc:
        config["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": TYPE + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
        # Active: a process that stops answering (dead, or stuck: no reply within the timeout)
        # leaves the rotation after two failed checks, within about two intervals; one passing
        # check brings it back (a restarted worker too). Also while no request used the cluster
        # yet, where Envoy would otherwise check once a minute.
        interval = options.health_check_interval_seconds
        config["health_checks"] = [
            {
                "timeout": _duration(min(1.0, interval)),
                "interval": _duration(interval),
                "no_traffic_interval": _duration(interval),
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ]
    return config


def outlier_detection() -> dict[str, Any]:
    """Passive health checking: an endpoint whose calls keep failing is ejected for a while (5 s,
    longer each time again), without waiting for the next health check. Failures Envoy meets
    itself (connection refused or reset, timeouts) count apart from the answers of a server that
    works (a gRPC UNAVAILABLE is a 503); both eject after a few in a row. At most half of a
    cluster's endpoints are out at once (always at least one of them may be)."""
    return {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": 3,
        "enforcing_consecutive_local_origin_failure": 100,
        "consecutive_gateway_failure": 5,
        "enforcing_consecutive_gateway_failure": 100,
        "consecutive_5xx": 5,
        "interval": "1s",
        "base_ejection_time": "5s",
        "max_ejection_time": "30s",
        "max_ejection_percent": 50,
    }


def min_healthy_percent(upstream: Upstream) -> float:
    """/healthz answers 200 while each cluster has one healthy endpoint: a worker down is one
    fewer in the rotation, not a gateway down. (Every record of a DNS name is an endpoint too; the
    share cannot know how many: a name alone asks all of them to be healthy.)"""
    return math.floor(10_000 / len(upstream.addresses)) / 100


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def envoy_bootstrap(options: EnvoyOptions) -> dict[str, Any]:
    return {
        # Past this many client connections Envoy refuses new ones rather than run out of memory.
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": TYPE + "envoy.extensions.resource_monitors.downstream_connections.v3."
                        "DownstreamConnectionsConfig",
                        "max_active_downstream_connections": options.max_connections,
                    },
                }
            ]
        },
        "admin": {
            "address": {"socket_address": {"address": options.admin_host, "port_value": options.admin_port}}
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "public_http",
                    "address": {
                        "socket_address": {"address": options.listen_host, "port_value": options.listen_port}
                    },
                    "per_connection_buffer_limit_bytes": 1024 * 1024,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": http_connection_manager(options),
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [cluster(upstream, options) for upstream in options.upstreams],
        },
    }


PRODUCTION_HEADER = """\
# Envoy as Chirp's production gateway. Generated by `chirp envoy-config` from the contracts'
# google.api.http rules and edge_proxy/envoy_config.py; do not edit (a test checks they agree).
#
# Needs, beside this file:
#   /etc/chirp/chirp.pb   the descriptor set: `chirp envoy-config --descriptor chirp.pb`
#   /etc/chirp/openapi.json   the REST API's OpenAPI document, edge_proxy/openapi.json
#   hosts graph, tweets, timeline and edge (`chirp serve NAME`; see deploy/docker-compose.yml)
"""


def render(config: Mapping[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(dict(config), sort_keys=False, width=110)


def production_yaml() -> str:
    return render(envoy_bootstrap(production_options()), PRODUCTION_HEADER)
