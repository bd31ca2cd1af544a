"""edge_proxy/envoy.yaml is what `chirp envoy-config` prints, and the generated config routes
every REST binding of the contracts to its method, with the right auth and rate-limit policy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from chirp_core.rpc import ON_BEHALF_OF_HEADER, SESSION_ID_HEADER, USER_ID_HEADER
from edge_proxy.envoy_config import BUDGET_METADATA, CLUSTER_OF_SERVICE, production_yaml
from edge_proxy.http_rules import descriptor_set
from edge_proxy.limits import DEFAULT_LIMITS_FILE, DOMAIN, SIGN_IN_RPCS, load_limits

ROOT = Path(__file__).resolve().parents[2]
ENVOY_YAML = ROOT / "edge_proxy" / "envoy.yaml"
COMPOSE_YAML = ROOT / "deploy" / "docker-compose.yml"
FILTER_ORDER = [
    "envoy.filters.http.header_mutation",
    "chirp.strip_identity",
    "envoy.filters.http.lua",
    "envoy.filters.http.health_check",
    "envoy.filters.http.grpc_web",
    "envoy.filters.http.jwt_authn",
    "envoy.filters.http.local_ratelimit",
    "envoy.filters.http.ratelimit",
    "envoy.filters.http.grpc_json_transcoder",
    "envoy.filters.http.router",
]
SAMPLE_USER, SAMPLE_IP = 42, "203.0.113.7"


@pytest.fixture(scope="module")
def envoy() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(ENVOY_YAML.read_text())
    return config


@pytest.fixture(scope="module")
def manager(envoy: dict[str, Any]) -> dict[str, Any]:
    [listener] = envoy["static_resources"]["listeners"]
    [chain] = listener["filter_chains"]
    [hcm] = chain["filters"]
    config: dict[str, Any] = hcm["typed_config"]
    return config


@pytest.fixture(scope="module")
def routes(manager: dict[str, Any]) -> list[dict[str, Any]]:
    [host] = manager["route_config"]["virtual_hosts"]
    found: list[dict[str, Any]] = host["routes"]
    return found


@pytest.fixture(scope="module")
def filters(manager: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["typed_config"] for f in manager["http_filters"]}


@pytest.fixture(scope="module")
def http_rules() -> dict[str, tuple[str, str]]:
    """'package.Service/Method' -> (HTTP verb, path template) for every method with an HTTP rule,
    read from the descriptor set Envoy loads."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set()).file
    assert {"google/rpc/error_details.proto", "google/rpc/status.proto"} <= {f.name for f in files}
    assert not any(f.package.startswith("envoy.") for f in files)
    rules: dict[str, tuple[str, str]] = {}
    for file in files:
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                if verb is not None:
                    rules[f"{file.package}.{service.name}/{method.name}"] = (
                        verb.upper(),
                        getattr(rule, verb),
                    )
    return rules


def route_verb(route: dict[str, Any]) -> str:
    [header] = route["match"]["headers"]
    assert header["name"] == ":method"
    verb: str = header["string_match"]["exact"]
    return verb


def route_matches(route: dict[str, Any], path: str) -> bool:
    match = route["match"]
    if "path" in match:
        return bool(match["path"] == path)
    if "safe_regex" in match:
        return re.fullmatch(match["safe_regex"]["regex"], path) is not None
    return path.startswith(match["prefix"])


def sample_path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "123", template)


def rendered_descriptors(route: dict[str, Any]) -> list[tuple[tuple[str, str], ...]]:
    """What Envoy's rate_limits actions send for a signed-in SAMPLE_USER from SAMPLE_IP (after
    jwt_authn set x-chirp-user-id, or strip_identity removed it on the public routes)."""
    headers = {} if "/" + route["name"] in SIGN_IN_RPCS else {USER_ID_HEADER: str(SAMPLE_USER)}
    descriptors = []
    # A read: Envoy's local rate limit, with the budget its route's metadata names.
    budget = route.get("metadata", {}).get("filter_metadata", {}).get(BUDGET_METADATA, {}).get("budget")
    if budget is not None and USER_ID_HEADER in headers:
        descriptors.append((("generic_key", budget), ("user_id", headers[USER_ID_HEADER])))
    for rate_limit in route["route"].get("rate_limits", []):
        entries: list[tuple[str, str]] = []
        for action in rate_limit["actions"]:
            [(kind, spec)] = action.items()
            if kind == "generic_key":
                entries.append((spec.get("descriptor_key", "generic_key"), spec["descriptor_value"]))
            elif kind == "request_headers":
                if spec["header_name"] not in headers:
                    entries = []  # Envoy drops the whole descriptor
                    break
                entries.append((spec["descriptor_key"], headers[spec["header_name"]]))
            elif kind == "remote_address":
                entries.append(("remote_address", SAMPLE_IP))
            else:
                raise AssertionError(f"{route['name']}: action {kind} is not mirrored by limits.py")
        if entries:
            descriptors.append(tuple(entries))
    return descriptors


def method_routes(routes: list[dict[str, Any]], prefix: str = "") -> dict[str, dict[str, Any]]:
    """The routes of RPCs by 'package.Service/Method': REST ones, or with prefix 'grpc:' the
    gRPC / gRPC-Web ones."""
    return {
        r["name"].removeprefix(prefix): r
        for r in routes
        if r["name"].startswith(prefix) and "/" in r["name"] and ":" not in r["name"].removeprefix(prefix)
    }


def test_the_production_file_is_what_envoy_config_prints() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "chirp_app.cli", "envoy-config"], cwd=ROOT, capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == production_yaml()
    assert ENVOY_YAML.read_text() == printed.stdout, "run `chirp envoy-config > edge_proxy/envoy.yaml`"


def test_every_transcoded_service_exists_and_every_http_service_is_transcoded(
    filters: dict[str, dict[str, Any]], http_rules: dict[str, tuple[str, str]]
) -> None:
    services = filters["envoy.filters.http.grpc_json_transcoder"]["services"]
    assert len(services) == len(set(services))
    assert set(services) == {name.split("/")[0] for name in http_rules}


def test_every_route_names_a_method_and_matches_its_http_rule(
    routes: list[dict[str, Any]], http_rules: dict[str, tuple[str, str]]
) -> None:
    named = method_routes(routes)
    assert set(named) == set(http_rules), "one route per RPC with an HTTP rule, named after it"
    for name, route in named.items():
        verb, template = http_rules[name]
        assert route_verb(route) == verb, name
        assert route_matches(route, sample_path(template)), name
        assert route["route"]["cluster"] == CLUSTER_OF_SERVICE[name.split("/")[0]], name


def test_each_request_reaches_the_route_of_its_method(
    routes: list[dict[str, Any]], http_rules: dict[str, tuple[str, str]]
) -> None:
    """Envoy takes the first matching route: no route may shadow the one of another method."""

    def takes(route: dict[str, Any], verb: str, path: str) -> bool:
        verb_ok = "headers" not in route["match"] or route_verb(route) == verb
        return verb_ok and route_matches(route, path)

    for name, (verb, template) in http_rules.items():
        path = sample_path(template)
        first = next(r for r in routes if takes(r, verb, path))
        assert first["name"] == name, (name, verb, path)


def test_every_rpc_is_limited_by_the_shipped_limits(routes: list[dict[str, Any]]) -> None:
    limits = load_limits(DEFAULT_LIMITS_FILE)
    for prefix in ("", "grpc:"):
        for name, route in method_routes(routes, prefix).items():
            descriptors = rendered_descriptors(route)
            assert descriptors, f"{prefix}{name} has no rate limit"
            for descriptor in descriptors:
                assert limits.find(descriptor) is not None, (
                    name,
                    descriptor,
                    "has no limit in ratelimit.yaml",
                )


def test_descriptors_per_user_and_per_ip(routes: list[dict[str, Any]]) -> None:
    rest = method_routes(routes)
    user = str(SAMPLE_USER)
    assert rendered_descriptors(rest["chirp.tweets.v1.TweetService/CreateTweet"]) == [
        (("generic_key", "tweet_create"), ("user_id", user)),
        (("generic_key", "writes"), ("user_id", user)),
    ]
    assert rendered_descriptors(rest["chirp.graph.v1.GraphService/Follow"])[0] == (
        ("generic_key", "follow"),
        ("user_id", user),
    )
    assert rendered_descriptors(rest["chirp.tweets.v1.TweetService/GetTweet"]) == [
        (("generic_key", "reads"), ("user_id", user))
    ]
    for rpc in SIGN_IN_RPCS:
        assert rendered_descriptors(rest[rpc[1:]]) == [
            (("generic_key", "sign_in"), ("remote_address", SAMPLE_IP)),
            (("generic_key", "writes"), ("remote_address", SAMPLE_IP)),
        ]


def test_public_routes_are_sign_up_log_in_and_refresh_only(routes: list[dict[str, Any]]) -> None:
    """Every RPC route, REST and gRPC(-Web) alike, names the token requirement explicitly, or turns
    jwt_authn off: a route with neither would let any request through."""

    def policy(route: dict[str, Any]) -> str | None:
        per_filter = route.get("typed_per_filter_config", {}).get("envoy.filters.http.jwt_authn", {})
        if per_filter.get("disabled"):
            return "no auth"
        requirement: str | None = per_filter.get("requirement_name")
        return requirement

    public = {rpc.rsplit("/", 1)[1] for rpc in SIGN_IN_RPCS}
    assert public == {"CreateUser", "CreateSession", "RefreshSession"}
    for prefix in ("", "grpc:"):
        for name, route in method_routes(routes, prefix).items():
            expected = "no auth" if "/" + name in SIGN_IN_RPCS else "signed_in"
            assert policy(route) == expected, (prefix, name)
    tokenless = {r["name"] for r in routes if policy(r) == "no auth"}
    forwarded = {r["name"] for r in routes if r["name"] in tokenless and "direct_response" not in r}
    assert forwarded == {"jwks"} | {prefix + rpc[1:] for rpc in SIGN_IN_RPCS for prefix in ("", "grpc:")}
    answered_by_envoy = tokenless - forwarded
    assert {"healthz", "ping", "not-found"} <= answered_by_envoy
    jwks = next(r for r in routes if r["name"] == "jwks")
    assert route_matches(jwks, "/.well-known/jwks.json") and route_verb(jwks) == "GET"
    assert jwks["route"]["cluster"] == "jwks"
    healthz = next(r for r in routes if r["name"] == "healthz")
    assert route_matches(healthz, "/healthz") and route_verb(healthz) == "GET"


def test_grpc_routes_are_the_rest_rpcs_by_their_grpc_path(
    routes: list[dict[str, Any]], http_rules: dict[str, tuple[str, str]]
) -> None:
    grpc = method_routes(routes, "grpc:")
    assert set(grpc) == set(http_rules)
    for name, route in grpc.items():
        assert route["match"]["path"] == "/" + name
        assert route["route"]["cluster"] == CLUSTER_OF_SERVICE[name.split("/")[0]]


def test_slow_clients_are_bounded(manager: dict[str, Any]) -> None:
    """Production keeps the settings' defaults: headers within 10 s, the whole request within 60 s,
    an idle connection closed after 300 s."""
    assert manager["request_headers_timeout"] == "10s"
    assert manager["request_timeout"] == "60s"
    assert manager["common_http_protocol_options"]["idle_timeout"] == "300s"


def test_filters(manager: dict[str, Any], filters: dict[str, dict[str, Any]], envoy: dict[str, Any]) -> None:
    assert [f["name"] for f in manager["http_filters"]] == FILTER_ORDER
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}

    strip = filters["chirp.strip_identity"]["mutations"]
    assert strip == {
        "request_mutations": [
            {"remove": USER_ID_HEADER},
            {"remove": SESSION_ID_HEADER},
            {"remove": ON_BEHALF_OF_HEADER},
        ]
    }
    jwt = filters["envoy.filters.http.jwt_authn"]
    assert set(jwt["requirement_map"]) == {"signed_in"}
    [(name, provider)] = jwt["providers"].items()
    assert jwt["requirement_map"]["signed_in"] == {"provider_name": name}
    assert provider["issuer"] == "chirp"
    assert provider["forward"] is False
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert "from_params" not in provider and "from_cookies" not in provider
    claims = {c["claim_name"]: c["header_name"] for c in provider["claim_to_headers"]}
    assert claims == {"sub": USER_ID_HEADER, "sid": SESSION_ID_HEADER}
    jwks = provider["remote_jwks"]
    assert jwks["http_uri"]["cluster"] in clusters
    assert jwks["http_uri"]["uri"].endswith("/.well-known/jwks.json")
    assert "async_fetch" in jwks

    ratelimit = filters["envoy.filters.http.ratelimit"]
    assert ratelimit["domain"] == DOMAIN == load_limits(DEFAULT_LIMITS_FILE).domain
    assert ratelimit["failure_mode_deny"] is False
    assert ratelimit["rate_limit_service"]["transport_api_version"] == "V3"
    assert ratelimit["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"] in clusters

    transcoder = filters["envoy.filters.http.grpc_json_transcoder"]
    assert transcoder["print_options"] == {
        "preserve_proto_field_names": True,
        "always_print_primitive_fields": False,
        "stream_sse_style_delimited": True,
    }
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["match_incoming_request_route"] is True
    assert transcoder["request_validation_options"] == {
        "reject_unknown_method": False,
        "reject_unknown_query_parameters": True,
        "reject_binding_body_field_collisions": True,
    }
    health = filters["envoy.filters.http.health_check"]
    # Every gRPC cluster (not the JWKS's, which Envoy reads over plain HTTP).
    grpc_clusters = {name for name, c in clusters.items() if "health_checks" in c}
    assert grpc_clusters == set(clusters) - {"jwks"}
    assert set(health["cluster_min_healthy_percentages"]) == grpc_clusters
    hidden = filters["envoy.filters.http.header_mutation"]["mutations"]["response_mutations"]
    assert {"grpc-status", "grpc-message"} <= {m["remove"] for m in hidden}

    for name in grpc_clusters:
        cluster = clusters[name]
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        assert "http2_protocol_options" in options["explicit_http_config"], name
        assert cluster["load_assignment"]["cluster_name"] == name


def test_compose_file_runs_every_service_behind_envoy() -> None:
    compose = yaml.safe_load(COMPOSE_YAML.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "envoy", "graph", "tweets", "timeline", "edge"} <= set(services)
    for name in ("graph", "tweets", "timeline", "edge"):
        assert services[name]["command"] == ["chirp", "serve", name]
    assert any(volume.startswith("../edge_proxy/envoy.yaml:") for volume in services["envoy"]["volumes"])
    # The signing keys outlive a container: one volume, named by the graph service's key setting.
    key_dir = services["graph"]["environment"]["CHIRP_JWT_KEY_DIR"]
    assert f"jwt-keys:{key_dir}" in services["graph"]["volumes"] and "jwt-keys" in compose["volumes"]
