"""The limits file (envoyproxy/ratelimit format plus unit_multiplier), descriptor lookup, windows,
and the read limits Envoy enforces itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from chirp_core.settings import Settings
from edge_proxy import server as edge_server
from edge_proxy.limits import (
    DEFAULT_LIMITS_FILE,
    Limit,
    LimitsError,
    ReadLimit,
    Verdict,
    Window,
    is_read,
    judge,
    limits_file,
    load_limits,
    parse_limits,
)

CREATE_TWEET = "/chirp.tweets.v1.TweetService/CreateTweet"
FOLLOW = "/chirp.graph.v1.GraphService/Follow"
CREATE_USER = "/chirp.users.v1.UserService/CreateUser"
CREATE_SESSION = "/chirp.users.v1.UserService/CreateSession"
GET_TWEET = "/chirp.tweets.v1.TweetService/GetTweet"


def test_shipped_file_has_the_product_limits() -> None:
    config = load_limits(DEFAULT_LIMITS_FILE)
    assert config.domain == "chirp"

    def limit(*descriptor: tuple[str, str]) -> Limit:
        found = config.find(descriptor)
        assert found is not None, descriptor
        return found

    tweets = limit(("generic_key", "tweet_create"), ("user_id", "42"))
    assert (tweets.requests_per_unit, tweets.window_seconds) == (300, 3 * 3600)
    follows = limit(("generic_key", "follow"), ("user_id", "42"))
    assert (follows.requests_per_unit, follows.window_seconds) == (400, 24 * 3600)
    for key in ("user_id", "remote_address"):
        writes = limit(("generic_key", "writes"), (key, "42"))
        assert (writes.requests_per_unit, writes.window_seconds) == (1500, 5 * 60)
    reads = limit(("generic_key", "reads"), ("user_id", "42"))
    assert (reads.requests_per_unit, reads.window_seconds) == (1500, 5 * 60)
    assert config.reads == (ReadLimit(None, reads),)
    sign_in = limit(("generic_key", "sign_in"), ("remote_address", "203.0.113.7"))
    assert (sign_in.requests_per_unit, sign_in.window_seconds) == (30, 5 * 60)
    assert sign_in.describe() == "30 per 5 minutes"
    assert follows.describe() == "400 per day"


@pytest.mark.parametrize(
    ("unit", "multiplier", "seconds"),
    [
        ("second", None, 1),
        ("Minute", 5, 300),
        ("HOUR", 3, 10800),
        ("day", None, 86400),
        ("month", None, 30 * 86400),
        ("year", 2, 2 * 365 * 86400),
    ],
)
def test_units_and_multipliers(unit: str, multiplier: int | None, seconds: int) -> None:
    extra = "" if multiplier is None else f", unit_multiplier: {multiplier}"
    rate_limit = f"{{unit: {unit}, requests_per_unit: 7{extra}}}"
    config = parse_limits(f"domain: d\ndescriptors:\n  - key: k\n    rate_limit: {rate_limit}\n")
    limit = config.find((("k", "anything"),))
    assert limit is not None
    assert (limit.requests_per_unit, limit.window_seconds, limit.unit_multiplier) == (
        7,
        seconds,
        multiplier or 1,
    )


def test_lookup_follows_envoyproxy_ratelimit() -> None:
    config = parse_limits(
        """
domain: d
descriptors:
  - key: to_number
    rate_limit: {unit: day, requests_per_unit: 100}
  - key: to_number
    value: "2061111111"
    rate_limit: {unit: day, requests_per_unit: 5}
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 3}
"""
    )

    def requests(*descriptor: tuple[str, str]) -> int | None:
        limit = config.find(descriptor)
        return None if limit is None else limit.requests_per_unit

    assert requests(("to_number", "2062222222")) == 100
    assert requests(("to_number", "2061111111")) == 5  # key and value before key alone
    assert requests(("message_type", "marketing"), ("to_number", "1")) == 3
    assert requests(("message_type", "marketing")) is None  # a limit counts only at the last entry
    assert requests(("to_number", "1"), ("extra", "entry")) is None  # deeper than the config
    assert requests(("message_type", "transactional"), ("to_number", "1")) is None
    assert requests() is None


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("descriptors: []", "", "`domain` must be a non-empty string"),
        ("domain: d\nextra: 1", "the file", "unknown key(s) extra"),
        ("domain: d\ndescriptors: {key: k}", "descriptors", "must be a list"),
        ("domain: d\ndescriptors:\n  - value: v", "descriptors[0]", "`key`"),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limits: {unit: second, requests_per_unit: 1}",
            "descriptors[0]",
            "unknown key(s) rate_limits",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}",
            "descriptors[0].rate_limit.unit",
            "'fortnight' is not one of second, minute, hour, day, month, year",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: -1}",
            "descriptors[0].rate_limit.requests_per_unit",
            "whole number >= 0",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second}",
            "descriptors[0].rate_limit.requests_per_unit",
            "got None",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n"
            "    rate_limit: {unit: second, requests_per_unit: 1, unit_multiplier: 0}",
            "descriptors[0].rate_limit.unit_multiplier",
            "whole number >= 1",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n"
            "    rate_limit: {unit: second, requests_per_unit: 1, unit_multiplier: 1.5}",
            "descriptors[0].rate_limit.unit_multiplier",
            "got 1.5",
        ),
        (
            "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true, unit: second}",
            "descriptors[0].rate_limit",
            "an unlimited limit takes no unit",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n"
            "      - key: b\n        rate_limit: {unit: minute, requests_per_unit: 1}",
            "descriptors[0].descriptors[1]",
            "duplicate descriptor `b`",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n"
            "      - key: b\n        rate_limit: {unit: minute, requests_per_unit: 1, shadow_mode: true}",
            "descriptors[0].descriptors[0].rate_limit",
            "unknown key(s) shadow_mode",
        ),
        ("domain: d\ndescriptors: [\n", "", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_with_the_place_of_the_error(text: str, where: str, what: str) -> None:
    with pytest.raises(LimitsError) as caught:
        parse_limits(text, "limits.yaml")
    message = str(caught.value)
    assert message.startswith(f"limits.yaml: {where}"), message
    assert what in message, message


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(LimitsError, match=r"nowhere\.yaml: cannot read"):
        load_limits(tmp_path / "nowhere.yaml")


async def test_edge_services_refuse_to_start_with_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "domain: chirp\ndescriptors:\n  - key: k\n    rate_limit: {unit: week, requests_per_unit: 1}\n"
    )
    settings = Settings(data_dir=tmp_path, rate_limits=str(bad))
    with pytest.raises(LimitsError, match="'week' is not one of"):
        await edge_server.start(settings, "redis://127.0.0.1:1/0", 0)


def test_settings_choose_the_file() -> None:
    assert limits_file(Settings()) == DEFAULT_LIMITS_FILE
    assert limits_file(Settings(rate_limits="off")) is None
    assert limits_file(Settings(rate_limits=" OFF ")) is None
    assert limits_file(Settings(rate_limits="/etc/chirp/limits.yaml")) == Path("/etc/chirp/limits.yaml")


def test_windows_are_aligned_and_judged() -> None:
    window = Window.at(1_000_000_123.25, 300)
    assert (window.start, window.seconds) == (999_999_900, 300)
    assert window.reset_in == pytest.approx(76.75)
    limit = Limit(3, "SECOND")
    assert [judge(limit, n) for n in (1, 3, 4)] == [Verdict(False, 2), Verdict(False, 0), Verdict(True, 0)]


def test_reads_are_limited_per_user_and_the_file_says_how_much() -> None:
    config = parse_limits(
        """
domain: d
descriptors:
  - key: generic_key
    value: reads
    descriptors:
      - key: user_id
        rate_limit: {name: reads, unit: minute, requests_per_unit: 120}
      - key: user_id
        value: "7"
        rate_limit: {unit: second, requests_per_unit: 0}
      - key: user_id
        value: "8"
        rate_limit: {unlimited: true}
"""
    )
    everyone, blocked, free = config.reads
    assert (everyone.user_id, everyone.tokens, everyone.refill_seconds) == (None, 120, 60)
    # The bucket refills continuously: one read is back after 60 / 120 s, rounded up to 1 s.
    assert everyone.retry_after_seconds == 1
    assert (blocked.user_id, blocked.tokens, blocked.retry_after_seconds) == ("7", 0, 1)
    assert (free.user_id, free.tokens, free.refill_seconds) == ("8", 2**32 - 1, 1)
    assert ReadLimit(None, Limit(5, "MINUTE")).retry_after_seconds == 12
    assert parse_limits("domain: d\ndescriptors: []").reads == ()


def test_reads_and_writes_are_told_apart_by_the_http_verb() -> None:
    assert is_read("GET") and is_read("get")
    assert not any(is_read(verb) for verb in ("POST", "PATCH", "PUT", "DELETE"))


@pytest.mark.parametrize(
    ("entries", "what"),
    [
        ("    rate_limit: {unit: minute, requests_per_unit: 5}", "reads are limited per user"),
        (
            "    descriptors:\n      - key: remote_address\n"
            "        rate_limit: {unit: minute, requests_per_unit: 5}",
            "got `remote_address`",
        ),
        ("    descriptors:\n      - key: user_id", "only `key: user_id` entries with a rate_limit"),
        (
            "    descriptors:\n      - key: user_id\n        descriptors:\n          - key: path\n"
            "            rate_limit: {unit: minute, requests_per_unit: 5}",
            "no deeper descriptors",
        ),
        (
            "    descriptors:\n      - key: user_id\n"
            "        rate_limit: {unit: minute, requests_per_unit: 4294967296}",
            "at most 4294967295",
        ),
    ],
)
def test_a_reads_entry_envoy_cannot_enforce_is_refused(entries: str, what: str) -> None:
    text = f"domain: d\ndescriptors:\n  - key: generic_key\n    value: reads\n{entries}\n"
    with pytest.raises(LimitsError) as caught:
        parse_limits(text, "limits.yaml")
    message = str(caught.value)
    assert message.startswith("limits.yaml: descriptor `generic_key: reads`"), message
    assert what in message, message
