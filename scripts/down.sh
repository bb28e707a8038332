#!/usr/bin/env bash
# Stops a twin started with `scripts/up.sh --detach`: the listener and target
# groups (nginx), every task (each finishes its in-flight requests first),
# Prometheus when it runs, the tasks' cgroups; then revokes the API clients
# up.sh made (and removes their keys file) and stops the private PostgreSQL if
# up.sh started one, and the PgBouncer and replica of TWIN_POOLER and TWIN_REPLICA.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/twin.sh
source scripts/lib/twin.sh
# shellcheck source=scripts/lib/pgbouncer.sh
source scripts/lib/pgbouncer.sh
# shellcheck source=scripts/lib/twin-db.sh
source scripts/lib/twin-db.sh

if [ ! -f "$TWIN_PIDS" ] && [ ! -f "$TWIN_PG" ] && [ ! -f "$TWIN_KEYS" ] && [ ! -f "$TWIN_DB" ]; then
    twin_say "no twin is running"
    exit 0
fi
twin_stop_processes
twin_revoke_keys
twin_db_stop
if [ -f "$TWIN_PG" ]; then
    mapfile -t state <"$TWIN_PG"
    KC_PG_DIR=${state[0]}
    KC_PG_RUNAS=("${state[@]:1}")
    KC_PG_STARTED=1
    pg_stop_private
    rm -f "$TWIN_PG"
fi
twin_say "stopped"
