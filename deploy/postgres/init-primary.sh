#!/usr/bin/env bash
# The primary's side of streaming replication (deploy/docker-compose.yml mounts it into
# /docker-entrypoint-initdb.d/, so the postgres image runs it once, as the postgres user, when it
# creates the data directory): the role the standbys stream WAL as, a physical replication slot for
# the standby (the primary keeps the WAL it has not received, up to max_slot_wal_keep_size), and the
# pg_hba.conf line that lets it in from the compose network ("samenet": any subnet the primary is on).
#
# Each step is skipped when already done, so it can also be run on a data directory made before:
#   docker compose -f deploy/docker-compose.yml exec -u postgres postgres \
#     /docker-entrypoint-initdb.d/10-replication.sh
set -Eeuo pipefail

: "${PGDATA:?}" "${POSTGRES_USER:?}" "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}" "${REPLICATION_SLOT:?}"

hba="host replication ${REPLICATION_USER} samenet scram-sha-256"
if ! grep -qxF "$hba" "$PGDATA/pg_hba.conf"; then
    printf '%s\n' "$hba" >> "$PGDATA/pg_hba.conf"
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set user="$REPLICATION_USER" --set password="$REPLICATION_PASSWORD" --set slot="$REPLICATION_SLOT" <<'SQL'
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user')
\gexec
SELECT pg_create_physical_replication_slot(:'slot')
WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = :'slot');
SELECT pg_reload_conf();
SQL
