"""`chirp bench`: a one-command benchmark of home timelines in pull, push and hybrid mode on one
machine. The pieces: config (presets and flags), graphgen (the seeded power-law dataset), loader
(COPY), stackctl (its own PostgreSQL, Redis and `chirp up --processes` stack), driver (the
closed-loop load processes), probes and phases (what is measured), report and plots (results.json,
results.md, PNGs), run (the order of it all)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_TARGETS = {"graph": "127.0.0.1:50051", "tweets": "127.0.0.1:50052", "timeline": "127.0.0.1:50053"}


def parse_targets(text: str | None) -> dict[str, str]:
    targets = dict(DEFAULT_TARGETS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, address = part.partition("=")
        if name.strip() not in targets or not address:
            raise ValueError(f"--targets: expected graph=HOST:PORT,tweets=...,timeline=..., got {part!r}")
        targets[name.strip()] = address.strip()
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    from bench import soak
    from bench.config import build_parser, config_from_args

    parser = build_parser()
    soak.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.soak is not None:
        return _soak(args, argv)
    try:
        config = config_from_args(args)
        targets = parse_targets(args.targets)
    except ValueError as exc:
        print(f"chirp bench: {exc}", file=sys.stderr)
        return 2
    if args.publish:
        from bench.publish import check_root

        try:
            check_root(Path.cwd())
        except ValueError as exc:
            print(f"chirp bench: {exc}", file=sys.stderr)
            return 2
    if config.microblog_only and args.url:
        print("chirp bench: --microblog-only runs on a stack of its own; drop --url", file=sys.stderr)
        return 2
    if args.url and not args.database_url:
        print("chirp bench: --url needs --database-url (the dataset is loaded with COPY)", file=sys.stderr)
        return 2

    from bench import report, run

    if args.url:
        results = asyncio.run(
            run.run_external(
                config,
                url=args.url,
                targets=targets,
                database_url=args.database_url,
                redis_url=args.redis_url,
                label=args.mode_label,
            )
        )
    else:
        results = asyncio.run(run.run_own_stack(config))
    text = report.write(results, config.out, _command(argv))
    if config.plots and results.get("modes"):
        from bench.plots import plot

        plot(results, config.out)
    print(text, flush=True)
    if args.publish:
        from bench.publish import publish, publish_microblog

        written = (publish_microblog if config.microblog_only else publish)(config.out, Path.cwd())
        for path in written:
            print(f"chirp bench: wrote {path}")
    print(
        f"chirp bench: results in {config.out}/ (results.json, results.md"
        + (", PNG plots)" if config.plots and results.get("modes") else ")")
    )
    return 0


def _command(argv: Sequence[str] | None) -> str:
    return " ".join(
        ["chirp bench", *(shlex.quote(arg) for arg in (argv if argv is not None else sys.argv[1:]))]
    ).strip()


def _soak(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """`chirp bench --soak MINUTES`: on a stack of its own only, nothing published."""
    from bench import soak

    if args.url or args.publish:
        print("chirp bench: --soak runs on a stack of its own; drop --url and --publish", file=sys.stderr)
        return 2
    try:
        config = soak.config_from_args(args)
    except ValueError as exc:
        print(f"chirp bench: {exc}", file=sys.stderr)
        return 2
    return soak.main(config, _command(argv))
