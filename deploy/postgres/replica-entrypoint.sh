#!/usr/bin/env bash
# Entrypoint of the streaming replica (deploy/docker-compose.yml). On its first start, when its data
# directory is empty, it copies the primary with pg_basebackup -R, which also writes standby.signal
# and primary_conninfo (with the slot's name as primary_slot_name), retrying for up to
# PRIMARY_WAIT_SECONDS while the primary comes up. Then the postgres image's own entrypoint starts
# the server, which runs as a hot standby: read-only queries, replaying the primary's WAL.
#
# To copy the primary afresh, remove the replica's volume (docker compose rm -sf postgres-replica;
# docker volume rm <project>_postgres-replica) and start it again.
set -Eeuo pipefail

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
PRIMARY_HOST="${PRIMARY_HOST:-postgres}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
PRIMARY_WAIT_SECONDS="${PRIMARY_WAIT_SECONDS:-300}"
REPLICATION_SLOT="${REPLICATION_SLOT:-}"
: "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}"

# Started as root: give the data directory to postgres, then go on as postgres.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "$(ls -A "$PGDATA")" ]; then
        echo "replica: $PGDATA is neither empty nor a data directory; remove the volume to copy the primary again" >&2
        exit 1
    fi
    export PGPASSWORD="$REPLICATION_PASSWORD" PGCONNECT_TIMEOUT=10
    slot=()
    if [ -n "$REPLICATION_SLOT" ]; then
        slot=(-S "$REPLICATION_SLOT")
    fi
    deadline=$((SECONDS + PRIMARY_WAIT_SECONDS))
    until pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" -D "$PGDATA" \
        -R -X stream -c fast -w "${slot[@]}"; do
        # A failed copy leaves nothing to start from: empty the directory for the next attempt.
        find "$PGDATA" -mindepth 1 -delete
        if ((SECONDS >= deadline)); then
            echo "replica: no base backup from $PRIMARY_HOST:$PRIMARY_PORT after ${PRIMARY_WAIT_SECONDS} s" >&2
            exit 1
        fi
        echo "replica: primary $PRIMARY_HOST:$PRIMARY_PORT not ready; retrying in 3 s" >&2
        sleep 3
    done
    unset PGPASSWORD PGCONNECT_TIMEOUT
    echo "replica: copied the primary; starting as a hot standby" >&2
fi

# The data directory exists now, so the image's entrypoint initializes nothing and runs "$@".
exec docker-entrypoint.sh "$@"
