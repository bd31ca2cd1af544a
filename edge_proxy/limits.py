"""Rate limits: the limits file (envoyproxy/ratelimit format), the lookup of a descriptor's limit,
fixed-window arithmetic, and which calls are limited where.

Writes and sign-ins are counted by the rate-limit service (edge_proxy.ratelimit, counters in
Redis), with the descriptors of the route `rate_limits` actions edge_proxy.envoy_config writes.
Reads (every RPC whose HTTP binding is a GET: its REST, gRPC and gRPC-Web forms, the live stream
included) never reach that service: Envoy limits them itself with its local rate limit filter, one
token bucket per user, sized by the `reads` entry of the same limits file (read_limits). Either
way tests/edge_proxy checks that every route's descriptors have a limit in the shipped file.
No Redis and no gRPC here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chirp_core.settings import Settings

DOMAIN = "chirp"
DEFAULT_LIMITS_FILE = Path(__file__).with_name("ratelimit.yaml")
LIMITING_OFF = "off"

# Seconds per unit, as envoyproxy/ratelimit divides time (a month is 30 days, a year 365).
UNIT_SECONDS: Mapping[str, int] = {
    "SECOND": 1,
    "MINUTE": 60,
    "HOUR": 3600,
    "DAY": 86400,
    "MONTH": 86400 * 30,
    "YEAR": 86400 * 365,
}
# `unit_multiplier` is our one addition to the file format (as proposed upstream in
# envoyproxy/ratelimit#190): `unit: minute, unit_multiplier: 5` is a 5-minute window.
_ROOT_KEYS = frozenset({"domain", "descriptors"})
_DESCRIPTOR_KEYS = frozenset({"key", "value", "rate_limit", "descriptors"})
_RATE_LIMIT_KEYS = frozenset({"unit", "requests_per_unit", "unit_multiplier", "unlimited", "name"})

Entry = tuple[str, str]
Descriptor = tuple[Entry, ...]

# Descriptor keys and the generic_key values of the routes' rate_limits actions.
GENERIC_KEY = "generic_key"
USER_ID = "user_id"
REMOTE_ADDRESS = "remote_address"
# Every write call: per user, or per client IP for sign-up and log-in (rate-limit service).
WRITES = "writes"
SIGN_IN = "sign_in"
# Every read call per user: Envoy's local rate limit, no remote call (read_limits).
READS = "reads"
# The HTTP verb of a read's binding; every other verb is a write. A read changes nothing, so
# Envoy may refuse it on its own count without asking the shared counters.
READ_VERB = "GET"
# Envoy keeps one read bucket per user for at most this many users at once, the least recently
# seen dropped first (a dropped user starts again with a full bucket). About 100 bytes each.
MAX_READ_BUCKETS = 100_000
# Largest token bucket Envoy takes (its sizes are 32-bit).
MAX_BUCKET_TOKENS = 2**32 - 1

# Calls counted per client IP (they carry no token): sign-up and login share one budget.
SIGN_IN_RPCS = frozenset(
    {
        "/chirp.users.v1.UserService/CreateUser",
        "/chirp.users.v1.UserService/CreateSession",
        "/chirp.users.v1.UserService/RefreshSession",
    }
)
# Calls with a budget of their own per user, besides the budget of all writes.
PER_USER_RPCS: Mapping[str, str] = {
    "/chirp.tweets.v1.TweetService/CreateTweet": "tweet_create",
    "/chirp.graph.v1.GraphService/Follow": "follow",
    "/chirp.tweets.v1.TweetService/CreateMediaUpload": "media_upload",
}


class LimitsError(ValueError):
    """A limits file that cannot be used; the message names the file and the place in it."""


@dataclass(frozen=True)
class Limit:
    """`requests_per_unit` requests per `unit_multiplier` x `unit`; `unlimited` counts nothing."""

    requests_per_unit: int
    unit: str  # a key of UNIT_SECONDS
    unit_multiplier: int = 1
    name: str = ""
    unlimited: bool = False

    @property
    def window_seconds(self) -> int:
        return UNIT_SECONDS[self.unit] * self.unit_multiplier

    def describe(self) -> str:
        if self.unlimited:
            return "unlimited"
        unit = self.unit.lower()
        period = unit if self.unit_multiplier == 1 else f"{self.unit_multiplier} {unit}s"
        return f"{self.requests_per_unit} per {period}"


@dataclass(frozen=True)
class Window:
    """A fixed window: it starts at a multiple of its length since the epoch, as in envoyproxy/ratelimit."""

    start: int
    seconds: int
    reset_in: float  # seconds until the window ends

    @classmethod
    def at(cls, now: float, seconds: int) -> Window:
        start = math.floor(now / seconds) * seconds
        return cls(start, seconds, start + seconds - now)


@dataclass(frozen=True)
class Verdict:
    over_limit: bool
    remaining: int


def judge(limit: Limit, count: int) -> Verdict:
    """The decision once the window's count (this request included) is known."""
    return Verdict(count > limit.requests_per_unit, max(0, limit.requests_per_unit - count))


@dataclass(frozen=True)
class ReadLimit:
    """A per-user read budget as Envoy's local rate limit keeps it: a token bucket holding
    `tokens`, refilled at `tokens` per `refill_seconds` continuously, so a refused read may retry
    once one token is back (retry_after_seconds). `user_id` None gives every user a bucket of their
    own; a user ID sizes that user's alone (it wins, as `key: value` wins over `key` alone)."""

    user_id: str | None
    limit: Limit

    @property
    def tokens(self) -> int:
        return MAX_BUCKET_TOKENS if self.limit.unlimited else self.limit.requests_per_unit

    @property
    def refill_seconds(self) -> int:
        return 1 if self.limit.unlimited else self.limit.window_seconds

    @property
    def retry_after_seconds(self) -> int:
        """Seconds until a refused read has a token again (the whole window for a limit of 0)."""
        return max(1, math.ceil(self.refill_seconds / max(1, self.tokens)))


def is_read(verb: str) -> bool:
    """Whether an RPC bound to this HTTP verb is a read (Envoy's local limit) or a write."""
    return verb.upper() == READ_VERB


@dataclass
class _Node:
    limit: Limit | None = None
    children: dict[tuple[str, str | None], _Node] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimitConfig:
    """The limits of one domain, as a tree of descriptor entries."""

    domain: str
    source: str
    _root: _Node = field(repr=False)
    # The `generic_key: reads` entry, which Envoy enforces itself; empty: reads are not limited.
    reads: tuple[ReadLimit, ...] = ()

    def find(self, descriptor: Sequence[Entry]) -> Limit | None:
        """The limit for a descriptor, matched as envoyproxy/ratelimit matches it: level by level,
        `key: value` before `key` alone, and a limit counts only at the descriptor's last entry."""
        nodes = self._root.children
        found: Limit | None = None
        for depth, (key, value) in enumerate(descriptor):
            node = nodes.get((key, value)) or nodes.get((key, None))
            if node is None:
                break
            if node.limit is not None and depth == len(descriptor) - 1:
                found = node.limit
            if not node.children:
                break
            nodes = node.children
        return found


def limits_file(settings: Settings) -> Path | None:
    """settings.rate_limits: empty for the shipped file, "off" for none, otherwise a path."""
    value = settings.rate_limits.strip()
    if value.lower() == LIMITING_OFF:
        return None
    return Path(value) if value else DEFAULT_LIMITS_FILE


def load_limits(path: Path) -> RateLimitConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise LimitsError(f"{path}: cannot read the limits file: {exc.strerror or exc}") from None
    return parse_limits(text, str(path))


def parse_limits(text: str, source: str = "<limits>") -> RateLimitConfig:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LimitsError(f"{source}: not valid YAML: {exc}") from None
    root = _mapping(document, source, "the file", _ROOT_KEYS)
    domain = root.get("domain")
    if not isinstance(domain, str) or not domain:
        raise LimitsError(f"{source}: `domain` must be a non-empty string")
    tree = _Node()
    _load_level(tree, root.get("descriptors"), source, "descriptors")
    return RateLimitConfig(domain, source, tree, _read_limits(tree, source))


def _read_limits(tree: _Node, source: str) -> tuple[ReadLimit, ...]:
    """The `generic_key: reads` entry: `user_id` limits (any user, or one user) and nothing else,
    since Envoy counts reads per user and matches its descriptors whole."""
    reads = tree.children.get((GENERIC_KEY, READS))
    if reads is None:
        return ()
    where = f"{source}: descriptor `{GENERIC_KEY}: {READS}`"
    if reads.limit is not None:
        raise LimitsError(f"{where}: reads are limited per user; put its rate_limit under `key: {USER_ID}`")
    found: list[ReadLimit] = []
    for (key, value), node in reads.children.items():
        if key != USER_ID or node.limit is None or node.children:
            raise LimitsError(
                f"{where}: only `key: {USER_ID}` entries with a rate_limit and no deeper descriptors"
                f" belong under it (Envoy counts reads per user), got `{key}`"
            )
        if node.limit.requests_per_unit > MAX_BUCKET_TOKENS:
            raise LimitsError(f"{where}: requests_per_unit: at most {MAX_BUCKET_TOKENS} for reads")
        found.append(ReadLimit(value, node.limit))
    return tuple(found)


def _load_level(parent: _Node, items: Any, source: str, where: str) -> None:
    if items is None:
        return
    if not isinstance(items, list):
        raise LimitsError(f"{source}: {where}: must be a list of descriptors")
    for index, item in enumerate(items):
        here = f"{where}[{index}]"
        descriptor = _mapping(item, source, here, _DESCRIPTOR_KEYS)
        key = descriptor.get("key")
        if not isinstance(key, str) or not key:
            raise LimitsError(f"{source}: {here}: `key` must be a non-empty string")
        value = _scalar(descriptor.get("value"), source, f"{here}.value")
        composite = (key, value)
        if composite in parent.children:
            shown = key if value is None else f"{key}: {value}"
            raise LimitsError(f"{source}: {here}: duplicate descriptor `{shown}` at this level")
        node = _Node()
        if descriptor.get("rate_limit") is not None:
            node.limit = _limit(descriptor["rate_limit"], source, f"{here}.rate_limit")
        _load_level(node, descriptor.get("descriptors"), source, f"{here}.descriptors")
        parent.children[composite] = node


def _limit(raw: Any, source: str, where: str) -> Limit:
    spec = _mapping(raw, source, where, _RATE_LIMIT_KEYS)
    name = spec.get("name", "")
    if not isinstance(name, str):
        raise LimitsError(f"{source}: {where}.name: must be a string")
    unlimited = spec.get("unlimited", False)
    if not isinstance(unlimited, bool):
        raise LimitsError(f"{source}: {where}.unlimited: must be true or false")
    unit_name = spec.get("unit")
    if unlimited:
        if unit_name is not None or "requests_per_unit" in spec or "unit_multiplier" in spec:
            raise LimitsError(
                f"{source}: {where}: an unlimited limit takes no unit, requests_per_unit or unit_multiplier"
            )
        return Limit(0, "SECOND", name=name, unlimited=True)
    if not isinstance(unit_name, str) or unit_name.upper() not in UNIT_SECONDS:
        units = ", ".join(u.lower() for u in UNIT_SECONDS)
        raise LimitsError(f"{source}: {where}.unit: {unit_name!r} is not one of {units}")
    requests = spec.get("requests_per_unit")
    if not isinstance(requests, int) or isinstance(requests, bool) or requests < 0:
        raise LimitsError(
            f"{source}: {where}.requests_per_unit: must be a whole number >= 0, got {requests!r}"
        )
    multiplier = spec.get("unit_multiplier", 1)
    if not isinstance(multiplier, int) or isinstance(multiplier, bool) or multiplier < 1:
        raise LimitsError(
            f"{source}: {where}.unit_multiplier: must be a whole number >= 1, got {multiplier!r}"
        )
    return Limit(requests, unit_name.upper(), multiplier, name)


def _mapping(raw: Any, source: str, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise LimitsError(f"{source}: {where}: must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise LimitsError(
            f"{source}: {where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )
    return raw


def _scalar(raw: Any, source: str, where: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise LimitsError(f"{source}: {where}: must be a string")
    return str(raw)
