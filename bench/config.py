"""What one benchmark run does: dataset sizes, workload mix and durations. Two presets (the full
default run and --quick); every field can be changed from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MODES = ("pull", "push", "hybrid")


@dataclass(frozen=True)
class Mix:
    """Shares of the closed-loop workload's operations; they need not add up to 1."""

    read: float = 0.95
    tweet: float = 0.04
    follow: float = 0.01

    @classmethod
    def parse(cls, text: str) -> Mix:
        parts = [float(part) for part in text.split(",")]
        if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
            raise ValueError("--mix is READ,TWEET,FOLLOW with non-negative shares, e.g. 95,4,1")
        total = sum(parts)
        return cls(parts[0] / total, parts[1] / total, parts[2] / total)

    def label(self) -> str:
        return f"{self.read:.0%} reads, {self.tweet:.0%} tweets, {self.follow:.0%} follows"


@dataclass(frozen=True)
class BenchConfig:
    # The dataset: a power-law follow graph and a tweet history (graphgen).
    users: int = 20_000
    median_followees: float = 50.0
    # Spread of the log-normal number of accounts each user follows.
    followee_sigma: float = 0.9
    celebrities: int = 5
    # The stack's CHIRP_CELEBRITY_THRESHOLD; the generated celebrities have more followers, every
    # other account fewer.
    celebrity_threshold: int = 10_000
    tweets_per_user: float = 10.0
    celebrity_tweets: int = 60
    history_days: float = 7.0
    seed: int = 20240601

    # The workload: a closed loop of `concurrency` clients in each of `load_processes` processes.
    mix: Mix = field(default_factory=Mix)
    active_users: int = 400
    load_processes: int = 2
    concurrency: int = 8
    timeline_limit: int = 20
    rest_seconds: float = 60.0
    grpc_seconds: float = 30.0
    write_seconds: float = 10.0
    ceiling_seconds: float = 15.0
    speedup_seconds: float = 20.0
    # Requests in the first second of each phase (connections opening) are not counted.
    warmup_seconds: float = 1.0

    # Fan-out lag probes: tweets by ordinary and by celebrity authors, each polled for in the
    # home timelines of up to lag_followers warm followers.
    lag_probes_ordinary: int = 36
    lag_probes_celebrity: int = 12
    lag_followers: int = 4
    lag_poll_seconds: float = 0.025
    lag_timeout_seconds: float = 30.0
    # Timeline reads counted for the PostgreSQL statements per read.
    statement_probe_reads: int = 400

    # The stack: timeline modes run one after the other on copies of one dataset, each with
    # `processes` worker processes; the speed-up run compares 1 and `processes` processes.
    modes: tuple[str, ...] = MODES
    processes: int = 2
    # Stack settings left at their defaults unless given.
    fanout_workers: int | None = None
    timeline_size: int | None = None

    # The microblog phase (bench.microblog): a uniform graph of its own, seeded over gRPC, then
    # warm home-timeline reads with each count of closed-loop clients, through Envoy (wrk) and
    # over gRPC, next to the Health.Check ceiling. Follows and tweets beyond the `*_grpc` counts
    # (None: all of them) are loaded with COPY instead, to keep a short run short.
    microblog: bool = True
    microblog_only: bool = False
    microblog_users: int = 1_000
    microblog_follows: int = 100
    microblog_tweets: int = 20
    microblog_grpc_follows: int | None = None
    microblog_grpc_tweets: int | None = None
    microblog_clients: tuple[int, ...] = (4, 16)
    microblog_seconds: float = 15.0
    # Calls in flight while seeding.
    seed_concurrency: int = 16

    out: Path = Path("bench-results")
    plots: bool = True
    quick: bool = False

    def validate(self) -> None:
        if self.users < 10:
            raise ValueError("--users must be at least 10")
        if not 0 <= self.celebrities < self.users // 2:
            raise ValueError("--celebrities must be below half the users")
        if self.celebrities and self.celebrity_threshold * 1.05 >= self.users - 1:
            raise ValueError(
                f"celebrities need more than --celebrity-threshold followers: with {self.users} users "
                f"the threshold must stay below {int((self.users - 1) / 1.05)}"
            )
        if not 1 <= self.active_users <= self.users - self.celebrities:
            raise ValueError("--active-users must be 1..users - celebrities")
        unknown = set(self.modes) - set(MODES)
        if unknown or not self.modes:
            raise ValueError(f"--modes: choose among {', '.join(MODES)}")
        if self.processes < 1 or self.load_processes < 1 or self.concurrency < 1:
            raise ValueError("--processes, --load-processes and --concurrency must be >= 1")
        if self.microblog or self.microblog_only:
            if self.microblog_users < 2 or not 0 < self.microblog_follows < self.microblog_users:
                raise ValueError("--microblog-users must be >= 2 and --microblog-follows 1..users - 1")
            if self.microblog_tweets < 0 or self.microblog_seconds <= 0:
                raise ValueError("--microblog-tweets must be >= 0 and --microblog-seconds > 0")
            if not self.microblog_clients or min(self.microblog_clients) < 1:
                raise ValueError("--microblog-clients: comma-separated counts, each >= 1")


FULL = BenchConfig()
QUICK = replace(
    FULL,
    users=3_000,
    median_followees=30.0,
    celebrities=3,
    celebrity_threshold=1_000,
    tweets_per_user=5.0,
    celebrity_tweets=30,
    active_users=120,
    rest_seconds=9.0,
    grpc_seconds=5.0,
    write_seconds=3.0,
    ceiling_seconds=4.0,
    speedup_seconds=5.0,
    lag_probes_ordinary=8,
    lag_probes_celebrity=4,
    statement_probe_reads=120,
    microblog_grpc_follows=3_000,
    microblog_grpc_tweets=1_500,
    microblog_seconds=3.0,
    quick=True,
)

# Command-line flag -> config field, for the plain numeric knobs.
_NUMERIC: dict[str, tuple[str, type, str]] = {
    "--users": ("users", int, "accounts in the generated graph"),
    "--median-followees": ("median_followees", float, "median accounts each user follows"),
    "--celebrities": ("celebrities", int, "accounts with more than --celebrity-threshold followers"),
    "--celebrity-threshold": ("celebrity_threshold", int, "the stack's CHIRP_CELEBRITY_THRESHOLD"),
    "--tweets-per-user": ("tweets_per_user", float, "mean tweets per account in the history"),
    "--seed": ("seed", int, "seed of the graph, the history and the workload"),
    "--active-users": ("active_users", int, "accounts logged in, warmed and driving the workload"),
    "--load-processes": ("load_processes", int, "processes generating load"),
    "--concurrency": ("concurrency", int, "closed-loop clients per load process"),
    "--seconds": ("rest_seconds", float, "length of the mixed workload through the gateway"),
    "--grpc-seconds": ("grpc_seconds", float, "length of the mixed workload straight to the services"),
    "--ceiling-seconds": ("ceiling_seconds", float, "length of each ceiling run"),
    "--speedup-seconds": ("speedup_seconds", float, "length of each 1-vs-N-processes run"),
    "--processes": ("processes", int, "worker processes of the stack (chirp up --processes)"),
    "--fanout-workers": ("fanout_workers", int, "CHIRP_FANOUT_WORKERS of the stack"),
    "--timeline-size": ("timeline_size", int, "CHIRP_TIMELINE_SIZE of the stack (entries kept per timeline)"),
    "--microblog-users": ("microblog_users", int, "accounts of the microblog phase's graph"),
    "--microblog-follows": ("microblog_follows", int, "random follows of each account (microblog phase)"),
    "--microblog-tweets": ("microblog_tweets", int, "tweets of each account (microblog phase)"),
    "--microblog-seconds": ("microblog_seconds", float, "length of each microblog read run"),
    "--microblog-grpc-follows": (
        "microblog_grpc_follows",
        int,
        "follows seeded over gRPC, the rest loaded with COPY (default: all; --quick: 3000)",
    ),
    "--microblog-grpc-tweets": (
        "microblog_grpc_tweets",
        int,
        "tweets seeded over gRPC, the rest loaded with COPY (default: all; --quick: 1500)",
    ),
    "--seed-concurrency": ("seed_concurrency", int, "gRPC calls in flight while seeding (microblog phase)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chirp bench",
        description="Load a synthetic power-law graph into a stack of its own and measure home "
        "timelines in pull, push and hybrid mode, next to a ceiling run; writes results.json, "
        "results.md and PNG plots. Loopback only; nothing outside its temporary stack is touched "
        "unless --url is given.",
    )
    parser.add_argument("--quick", action="store_true", help="a small dataset and short phases (< 3 min)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default bench-results/)")
    parser.add_argument(
        "--modes", metavar="LIST", help="comma-separated timeline modes (default pull,push,hybrid)"
    )
    parser.add_argument(
        "--mix", type=Mix.parse, metavar="R,T,F", help="READ,TWEET,FOLLOW shares (default 95,4,1)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--microblog-clients",
        metavar="LIST",
        help="comma-separated closed-loop client counts of the microblog phase (default 4,16)",
    )
    microblog = parser.add_mutually_exclusive_group()
    microblog.add_argument("--no-microblog", action="store_true", help="skip the microblog phase")
    microblog.add_argument(
        "--microblog-only",
        action="store_true",
        help="run the microblog phase alone (its graph seeded over gRPC, then warm reads)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also write the results into docs/bench/, docs/capacity.md and the README's table "
        "(run from the repository's root); with --microblog-only, docs/bench/microblog.json and .md",
    )
    for flag, (name, kind, text) in _NUMERIC.items():
        parser.add_argument(flag, dest=name, type=kind, metavar="N" if kind is int else "X", help=text)
    external = parser.add_argument_group(
        "a running stack",
        "Benchmark a stack started elsewhere (one mode, as it runs; no restarts, no speed-up run, no "
        "CPU figures; its rate limits should be off). The dataset is bulk-loaded with COPY, so the "
        "database must be reachable too; --celebrity-threshold should match the stack's.",
    )
    external.add_argument("--url", help="the REST gateway, e.g. http://127.0.0.1:8080")
    external.add_argument(
        "--targets",
        help="gRPC addresses as graph=HOST:PORT,tweets=HOST:PORT,timeline=HOST:PORT "
        "(default: 127.0.0.1:50051, :50052, :50053)",
    )
    external.add_argument("--database-url", help="the stack's PostgreSQL (required with --url)")
    external.add_argument("--redis-url", help="the stack's Redis, for its memory figures")
    external.add_argument("--mode-label", default="external", help="what to call the stack's mode")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    config = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    for name, _, _ in _NUMERIC.values():
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if args.out is not None:
        changes["out"] = args.out
    if args.modes:
        changes["modes"] = tuple(mode.strip() for mode in args.modes.split(",") if mode.strip())
    if args.mix is not None:
        changes["mix"] = args.mix
    if args.no_plots:
        changes["plots"] = False
    if args.microblog_clients:
        try:
            changes["microblog_clients"] = tuple(
                int(part) for part in args.microblog_clients.split(",") if part.strip()
            )
        except ValueError:
            raise ValueError("--microblog-clients: comma-separated counts, e.g. 4,16") from None
    if args.no_microblog:
        changes["microblog"] = False
    if args.microblog_only:
        changes["microblog_only"] = True
    config = replace(config, **changes)
    config.validate()
    return config


def config_dict(config: BenchConfig) -> dict[str, Any]:
    """The config as JSON-ready values."""
    values: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Mix):
            value = {"read": value.read, "tweet": value.tweet, "follow": value.follow}
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        values[f.name] = value
    return values
