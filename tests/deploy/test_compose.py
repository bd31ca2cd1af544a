"""deploy/docker-compose.yml wires the topology it describes: the Chirp services write through
pgbouncer (transaction mode) to a PostgreSQL primary set up for streaming replication and read from
a hot standby that copies it with pg_basebackup; every server a setting names is a service of the
file. No Docker engine here: these are checks of the files, plus the parsers of bash and (when
installed) pgbouncer."""

from __future__ import annotations

import configparser
import dataclasses
import itertools
import os
import pwd
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from chirp_core.settings import ADDRESS_FIELDS, ENV_PREFIX, Settings, target_addresses

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_YAML = DEPLOY / "docker-compose.yml"
CHIRP_SERVICES = ("graph", "tweets", "timeline", "edge")
PRIMARY, REPLICA, POOLER = "postgres", "postgres-replica", "pgbouncer"
PGBOUNCER_INI = "/etc/pgbouncer/pgbouncer.ini"
INITDB_DIR = PurePosixPath("/docker-entrypoint-initdb.d")
# A user name no system has: pgbouncer loads its configuration, then stops at switching to it.
NO_SUCH_USER = "chirp-config-check-no-such-user"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    # yaml.safe_load resolves the anchors and `<<` merge keys, as Compose does.
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_YAML.read_text())["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    # An unquoted off/yes/1 would reach the container as false/true: every value is quoted text.
    bad = {name: value for name, value in env.items() if not isinstance(value, str)}
    assert not bad, f"quote these environment values: {bad}"
    return env


def settings_of(services: dict[str, dict[str, Any]], name: str) -> Settings:
    return Settings.from_env(environment(services[name]))


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> file of the repository, for the service's bind mounts of files."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (DEPLOY / source).resolve()
    return found


def data_volume(service: dict[str, Any]) -> str:
    """The named volume a PostgreSQL service keeps its data directory in."""
    (name,) = (v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == "/var/lib/postgresql/data")
    assert name in yaml.safe_load(COMPOSE_YAML.read_text())["volumes"], f"{name} is a named volume"
    return name


def command_options(command: list[str]) -> dict[str, str]:
    """The `-c name=value` settings of a `postgres` command line."""
    assert command[0] == "postgres", command
    pairs = [arg.partition("=") for flag, arg in itertools.pairwise(command) if flag == "-c"]
    return {name: value for name, _, value in pairs}


def pg_basebackup_args(script: str) -> list[str]:
    """The arguments of the script's pg_basebackup command."""
    text = script.replace("\\\n", " ")
    lines = [
        line
        for line in text.splitlines()
        if not line.lstrip().startswith("#") and re.search(r"(^|\s)pg_basebackup\s", line)
    ]
    assert len(lines) == 1, f"one pg_basebackup command, found {lines}"
    words = shlex.split(re.split(r";|&&|\|\|", lines[0])[0], comments=True)
    return words[words.index("pg_basebackup") + 1 :]


def option(args: list[str], flag: str) -> str:
    assert flag in args, f"pg_basebackup {flag} missing from {args}"
    return args[args.index(flag) + 1]


def expand(word: str, env: dict[str, str]) -> str:
    """ "$NAME" or "${NAME}" from the service's environment; other words as they are."""
    match = re.fullmatch(r"\$\{?(\w+)\}?", word)
    if not match:
        return word
    assert match.group(1) in env, f"{word} is not set in the service's environment"
    return env[match.group(1)]


def pgbouncer_config(services: dict[str, dict[str, Any]]) -> configparser.ConfigParser:
    config = configparser.ConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    config.read_string(mounts(services[POOLER])[PGBOUNCER_INI].read_text())
    return config


def conninfo(text: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(text))


def shell_scripts() -> list[Path]:
    return sorted(path for folder in ("postgres", "pgbouncer") for path in (DEPLOY / folder).glob("*.sh"))


@pytest.mark.parametrize("name", CHIRP_SERVICES)
def test_chirp_service_settings_parse_and_name_the_database_topology(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = environment(services[name])
    known = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert not {key for key in env if key.startswith(ENV_PREFIX)} - known, "a misspelt CHIRP_ setting"
    settings = Settings.from_env(env)
    settings.validate()

    primary = urlsplit(settings.database_url or "")
    assert primary.hostname == POOLER, "writes go through pgbouncer"
    # pgbouncer in transaction mode keeps no server-side prepared statements.
    assert settings.db_prepare_threshold is None
    assert [urlsplit(url).hostname for url in settings.replica_urls] == [REPLICA], "the standby, directly"
    assert all(urlsplit(url).path == primary.path for url in settings.replica_urls), "the same database"
    assert services[name]["command"] == ["chirp", "serve", name]
    depends_on = services[name]["depends_on"]
    assert {PRIMARY, REPLICA, POOLER, "redis"} <= set(depends_on)


@pytest.mark.parametrize("name", CHIRP_SERVICES)
def test_every_server_a_chirp_setting_names_is_a_compose_service(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    settings = settings_of(services, name)
    targets = [getattr(settings, field) for field in ADDRESS_FIELDS if getattr(settings, field)]
    hosts = {host for target in targets for host, _ in target_addresses(target)}
    urls = [settings.database_url, settings.redis_url, *settings.replica_urls]
    assert None not in urls, "an external PostgreSQL and Redis, not embedded ones"
    hosts |= {urlsplit(url).hostname for url in urls if url}
    assert hosts >= {POOLER, REPLICA, "redis", "graph", "tweets", "timeline", "edge"}
    assert hosts <= set(services), f"not services of the compose file: {hosts - set(services)}"


def test_the_replica_is_a_postgres_standby_copied_from_the_primary(
    services: dict[str, dict[str, Any]],
) -> None:
    replica, primary = services[REPLICA], services[PRIMARY]
    assert replica["image"].startswith("postgres:") and replica["image"] == primary["image"]
    env = environment(replica)

    # Its entrypoint is a script of deploy/postgres/, mounted into the container.
    (entrypoint,) = replica["entrypoint"]
    script = mounts(replica)[entrypoint]
    assert script.parent == DEPLOY / "postgres" and os.access(script, os.X_OK)
    args = pg_basebackup_args(script.read_text())
    assert expand(option(args, "-h"), env) == PRIMARY
    assert expand(option(args, "-U"), env) == environment(primary)["REPLICATION_USER"]
    assert option(args, "-D") == "$PGDATA"
    assert "-R" in args, "-R writes standby.signal and primary_conninfo"
    assert option(args, "-X") == "stream"
    # The data directory is its own, and a hot standby serves the services' reads.
    assert data_volume(replica) != data_volume(primary)
    assert command_options(replica["command"]).get("hot_standby") == "on"
    # A standby needs at least the primary's max_wal_senders.
    wal_senders = int(command_options(primary["command"])["max_wal_senders"])
    assert int(command_options(replica["command"]).get("max_wal_senders", "10")) >= wal_senders
    for name in ("REPLICATION_USER", "REPLICATION_PASSWORD", "REPLICATION_SLOT"):
        assert env[name] == environment(primary)[name]


def test_the_primary_is_set_up_for_streaming_replication(services: dict[str, dict[str, Any]]) -> None:
    primary = services[PRIMARY]
    assert primary["image"].startswith("postgres:")
    options = command_options(primary["command"])
    assert options["wal_level"] in ("replica", "logical")
    assert int(options["max_wal_senders"]) >= 1 and int(options["max_replication_slots"]) >= 1
    # The init script makes the replication role, the slot and the pg_hba.conf line.
    init = [path for target, path in mounts(primary).items() if PurePosixPath(target).parent == INITDB_DIR]
    assert init and all(os.access(path, os.X_OK) for path in init), "executable, so the image runs it"
    script = "\n".join(path.read_text() for path in init)
    assert re.search(r"CREATE ROLE\b.*\bREPLICATION\b", script)
    assert "pg_create_physical_replication_slot" in script
    assert re.search(r"host replication \$\{?REPLICATION_USER\}? samenet scram-sha-256", script)
    assert "pg_hba.conf" in script


def test_pgbouncer_pools_transactions_in_front_of_the_primary(services: dict[str, dict[str, Any]]) -> None:
    pooler = services[POOLER]
    assert pooler["image"].startswith("edoburu/pgbouncer:")
    config = pgbouncer_config(services)
    assert config["pgbouncer"]["pool_mode"] == "transaction"
    assert int(config["pgbouncer"]["max_client_conn"]) > int(config["pgbouncer"]["default_pool_size"]) > 0

    url = urlsplit(settings_of(services, "graph").database_url or "")
    assert int(config["pgbouncer"]["listen_port"]) == (url.port or 5432)
    database = url.path.lstrip("/")
    server = conninfo(config["databases"][database])
    assert server["host"] == PRIMARY and server.get("dbname", database) == database
    assert int(server.get("port", "5432")) == 5432

    # The services' user and password are in the auth file pgbouncer is given (in plain text:
    # pgbouncer logs in to PostgreSQL with them, by SCRAM).
    auth_file = mounts(pooler)[config["pgbouncer"]["auth_file"]]
    users = dict(shlex.split(line)[:2] for line in auth_file.read_text().splitlines() if line.startswith('"'))
    assert users.get(unquote(url.username or "")) == unquote(url.password or "")
    assert services[PRIMARY]["environment"]["POSTGRES_USER"] == url.username
    assert services[PRIMARY]["environment"]["POSTGRES_PASSWORD"] == url.password


def test_envoy_is_the_official_image_with_the_generated_config(services: dict[str, dict[str, Any]]) -> None:
    envoy = services["envoy"]
    assert envoy["image"].startswith("envoyproxy/envoy:")
    assert mounts(envoy)["/etc/envoy/envoy.yaml"] == ROOT / "edge_proxy" / "envoy.yaml"
    assert envoy["command"] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]
    assert set(CHIRP_SERVICES) <= set(envoy["depends_on"])


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda path: path.name)
def test_shell_scripts_parse(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


def test_pgbouncer_accepts_its_config(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.access(binary, os.X_OK):
        pytest.skip("no pgbouncer here (apt-get install pgbouncer)")
    try:
        pwd.getpwnam(NO_SUCH_USER)
        pytest.skip(f"a user {NO_SUCH_USER} exists here")
    except KeyError:
        pass
    # pgbouncer -u USER loads the configuration (and its auth file), then fails to switch to USER:
    # a check of both files that never listens. Copies, with the auth file's path made local.
    pooler = mounts(services[POOLER])
    config_file = tmp_path / "pgbouncer.ini"
    auth_file = tmp_path / "userlist.txt"
    shutil.copyfile(pooler["/etc/pgbouncer/userlist.txt"], auth_file)
    text = pooler[PGBOUNCER_INI].read_text()
    config_file.write_text(re.sub(r"(?m)^auth_file = .*$", f"auth_file = {auth_file}", text))
    result = subprocess.run(
        [binary, "-u", NO_SUCH_USER, str(config_file)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert "could not find user" in output, output
    assert not re.search(r"\b(ERROR|WARNING)\b", output), output
