"""Where each call is rate limited, as the generated Envoy config says: reads by Envoy's local rate
limit (a token bucket per user, no remote call), writes and sign-ins by the rate-limit service
within a short timeout, and every refusal a google.rpc.Status JSON answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chirp_core.settings import Settings
from edge_proxy.envoy_config import (
    BUDGET_METADATA,
    LOCAL_RATELIMIT,
    EnvoyOptions,
    envoy_bootstrap,
    production_options,
)
from edge_proxy.http_rules import http_routes
from edge_proxy.limits import DEFAULT_LIMITS_FILE, SIGN_IN_RPCS, LimitsError, is_read, load_limits

RATELIMIT = "envoy.filters.http.ratelimit"
# The filter that checks the token and sets x-chirp-user-id, the key of the read buckets.
AUTHENTICATION_FILTERS = ("envoy.filters.http.ext_authz", "envoy.filters.http.jwt_authn")


def manager(options: EnvoyOptions) -> dict[str, Any]:
    [listener] = envoy_bootstrap(options)["static_resources"]["listeners"]
    config: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def filters(options: EnvoyOptions) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["typed_config"] for f in manager(options)["http_filters"]}


def rpc_routes(options: EnvoyOptions) -> list[tuple[dict[str, Any], bool]]:
    """Every RPC route (REST, and gRPC / gRPC-Web), with whether its RPC is a read."""
    reads = {http.rpc[1:]: is_read(http.verb) for http in http_routes()}
    [host] = manager(options)["route_config"]["virtual_hosts"]
    found = []
    for route in host["routes"]:
        name = route["name"].removeprefix("grpc:")
        if name in reads:
            found.append((route, reads[name]))
    return found


def budget(route: dict[str, Any]) -> str | None:
    found: str | None = (
        route.get("metadata", {}).get("filter_metadata", {}).get(BUDGET_METADATA, {}).get("budget")
    )
    return found


def settings_with(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path, media_store_port=9000, **changes)


def test_reads_make_no_call_to_the_rate_limit_service_and_writes_do() -> None:
    routes = rpc_routes(production_options())
    reads = [route for route, read in routes if read]
    writes = [route for route, read in routes if not read]
    assert {r["name"] for r in reads} >= {
        "chirp.timeline.v1.TimelineService/GetHomeTimeline",
        "grpc:chirp.timeline.v1.TimelineService/GetHomeTimeline",
        "chirp.timeline.v1.TimelineService/StreamHomeTimeline",
        "grpc:chirp.timeline.v1.TimelineService/StreamHomeTimeline",
        "chirp.tweets.v1.TweetService/GetTweet",
    }
    assert {r["name"] for r in writes} >= {
        "chirp.tweets.v1.TweetService/CreateTweet",
        "chirp.tweets.v1.TweetService/EditTweet",
        "chirp.tweets.v1.TweetService/DeleteTweet",
        "chirp.graph.v1.GraphService/Follow",
        "grpc:chirp.graph.v1.GraphService/Unfollow",
        "chirp.tweets.v1.TweetService/CreateMediaUpload",
        *(rpc[1:] for rpc in SIGN_IN_RPCS),
    }
    for route in reads:
        # No rate_limits on the route: the ratelimit filter has no descriptor, so it calls nobody.
        assert "rate_limits" not in route["route"], route["name"]
        assert budget(route) == "reads", route["name"]
    for route in writes:
        assert route["route"]["rate_limits"], route["name"]
        assert budget(route) is None, route["name"]


def test_reads_are_limited_by_envoy_per_user_from_the_limits_file() -> None:
    options = production_options()
    names = [f["name"] for f in manager(options)["http_filters"]]
    # After authentication (which sets the user header), before the remote limiter.
    [authentication] = [name for name in names if name in AUTHENTICATION_FILTERS]
    assert names.index(authentication) < names.index(LOCAL_RATELIMIT) < names.index(RATELIMIT)

    local = filters(options)[LOCAL_RATELIMIT]
    assert "token_bucket" not in local  # no default bucket: a route without a budget passes
    for enabled in (local["filter_enabled"], local["filter_enforced"]):
        assert enabled["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}
    [rule] = local["rate_limits"]
    budget_action, user_action = rule["actions"]
    assert budget_action["metadata"]["metadata_key"]["key"] == BUDGET_METADATA
    assert budget_action["metadata"]["source"] == "ROUTE_ENTRY"
    assert user_action["request_headers"] == {"header_name": "x-chirp-user-id", "descriptor_key": "user_id"}
    [reads] = load_limits(DEFAULT_LIMITS_FILE).reads
    [descriptor] = local["descriptors"]
    # An empty value: one bucket per user ID seen (Envoy's dynamic descriptors).
    assert descriptor["entries"] == [
        {"key": "generic_key", "value": "reads"},
        {"key": "user_id", "value": ""},
    ]
    assert descriptor["token_bucket"] == {
        "max_tokens": reads.limit.requests_per_unit,
        "tokens_per_fill": reads.limit.requests_per_unit,
        "fill_interval": f"{reads.limit.window_seconds}s",
    }
    assert local["max_dynamic_descriptors"] >= 10_000
    assert local["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03"
    assert local["rate_limited_as_resource_exhausted"] is True
    assert local["response_headers_to_add"][0]["header"] == {"key": "retry-after", "value": "1"}


def test_a_refused_read_gets_a_status_body_and_the_services_refusals_keep_theirs() -> None:
    mappers = manager(production_options())["local_reply_config"]["mappers"]
    local, kept = mappers[0], mappers[1]
    cel = local["filter"]["extension_filter"]["typed_config"]
    assert cel["expression"] == "response.code_details == 'local_rate_limited'"
    body = local["body_format_override"]["json_format"]
    assert body["code"] == 8 and body["details"][0]["reason"] == "RATE_LIMITED"
    assert "reads per user" in body["message"]
    assert "RL" in kept["filter"]["response_flag_filter"]["flags"]
    assert "body_format_override" not in kept


def test_writes_wait_for_the_rate_limit_service_briefly_then_pass(tmp_path: Path) -> None:
    assert filters(production_options())[RATELIMIT]["timeout"] == "0.05s"
    options = EnvoyOptions.from_settings(settings_with(tmp_path, rate_limit_timeout_ms=20), "chirp.pb")
    ratelimit = filters(options)[RATELIMIT]
    assert ratelimit["timeout"] == "0.02s"
    assert ratelimit["failure_mode_deny"] is False
    with pytest.raises(ValueError, match="CHIRP_RATE_LIMIT_TIMEOUT_MS"):
        envoy_bootstrap(EnvoyOptions.from_settings(settings_with(tmp_path, rate_limit_timeout_ms=0), "x"))


def test_the_settings_file_sizes_the_buckets_and_off_turns_both_limiters_off(tmp_path: Path) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        "domain: chirp\ndescriptors:\n  - key: generic_key\n    value: reads\n    descriptors:\n"
        "      - key: user_id\n        rate_limit: {unit: minute, requests_per_unit: 6}\n"
        "      - key: user_id\n        value: '42'\n        rate_limit: {unit: hour, requests_per_unit: 1}\n"
    )
    options = EnvoyOptions.from_settings(settings_with(tmp_path, rate_limits=str(limits)), "chirp.pb")
    local = filters(options)[LOCAL_RATELIMIT]
    assert [(d["entries"][1]["value"], d["token_bucket"]) for d in local["descriptors"]] == [
        ("", {"max_tokens": 6, "tokens_per_fill": 6, "fill_interval": "60s"}),
        ("42", {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"}),
    ]
    # Retry-After: the longest wait for one token of any bucket (one an hour for user 42).
    assert local["response_headers_to_add"][0]["header"]["value"] == "3600"

    no_reads = tmp_path / "writes-only.yaml"
    no_reads.write_text("domain: chirp\ndescriptors: []\n")
    options = EnvoyOptions.from_settings(settings_with(tmp_path, rate_limits=str(no_reads)), "chirp.pb")
    assert LOCAL_RATELIMIT not in filters(options) and RATELIMIT in filters(options)
    assert not any(budget(route) for route, _ in rpc_routes(options))

    off = EnvoyOptions.from_settings(settings_with(tmp_path, rate_limits="off"), "chirp.pb")
    assert LOCAL_RATELIMIT not in filters(off) and RATELIMIT not in filters(off)
    assert not any(budget(route) or "rate_limits" in route["route"] for route, _ in rpc_routes(off))

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "domain: chirp\ndescriptors:\n  - key: generic_key\n    value: reads\n    descriptors:\n"
        "      - key: path\n        rate_limit: {unit: minute, requests_per_unit: 6}\n"
    )
    with pytest.raises(LimitsError, match="got `path`"):
        EnvoyOptions.from_settings(settings_with(tmp_path, rate_limits=str(bad)), "chirp.pb")
