#!/usr/bin/env bash
# Compares two builds of the services in one run, interleaved, so the
# machine's drift and noise fall on both alike: one task of each build
# (issuance or verification) against the same scratch schema, then wrk
# against A, B, A, B, ... for ROUNDS rounds; prints each build's median
# requests/s, p99 and CPU time per request, and the ratios B/A. On a shared,
# busy machine requests/s swings with what else runs; the task's own CPU
# time per request (user + system, from /proc) swings far less.
#
#   load/ab.sh BIN_DIR_A BIN_DIR_B [issuance|verification]
#   load/ab.sh /tmp/before/target/release target/release verification
#
# Both tasks check API keys (AUTH_MODE=required, the default): B's `issuance
# clients add` makes an issuer and a verifier, and wrk sends their keys.
#
# Environment: DATABASE_URL (see scripts/lib/postgres.sh), ROUNDS (6),
# SECONDS_EACH (8), CONNECTIONS (32), AB_PORT_BASE (3970), AUTH_MODE
# (required, or off: no keys); A_ENV, B_ENV: extra VAR=value settings of one
# side's task (e.g. B_ENV=DB_POOLER=transaction: named vs unnamed statements);
# AB_PGBOUNCER=PORT: B connects through a PgBouncer in transaction mode on PORT
# (scripts/lib/pgbouncer.sh; give B_ENV=DB_POOLER=transaction too).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=load/lib.sh
source load/lib.sh
# shellcheck source=scripts/lib/pgbouncer.sh
source scripts/lib/pgbouncer.sh

if [ $# -lt 2 ] || [ "${1:-}" = --help ]; then
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
A=$1
B=$2
SERVICE=${3:-issuance}
case "$SERVICE" in
    issuance) LUA=issue.lua ;;
    verification) LUA=verify.lua ;;
    *)
        echo "the service is issuance or verification (got '$SERVICE')" >&2
        exit 2
        ;;
esac
for dir in "$A" "$B"; do
    [ -x "$dir/$SERVICE" ] || {
        echo "no $SERVICE binary in $dir" >&2
        exit 2
    }
done
ROUNDS=${ROUNDS:-6}
SECONDS_EACH=${SECONDS_EACH:-8}
CONNECTIONS=${CONNECTIONS:-32}
PORT_BASE=${AB_PORT_BASE:-3970}
OUT=target/ab
mkdir -p "$OUT"
command -v wrk >/dev/null 2>&1 || {
    echo "wrk is missing: apt-get install -y wrk" >&2
    exit 1
}
ensure_postgres

SCHEMA="kc_ab_$$"
URL=$(pg_schema_url "$SCHEMA")
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT
    load_cleanup
    pgb_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$DATABASE_URL" -qc "CREATE SCHEMA $SCHEMA"
DATABASE_URL="$URL" "$B/issuance" migrate >/dev/null
# Ids for the verification script: credentials that exist.
psql "$URL" -q -c "INSERT INTO credentials (id, name, email, credential_type, issued_by)
    SELECT md5(n::text)::uuid, 'ab ' || n, 'ab' || n || '@example.com', 'ab', 'seed' FROM generate_series(1, 10000) n"
psql "$URL" -Atc "SELECT id FROM credentials" >"$OUT/ids.txt"
if keys_auth_on; then
    DATABASE_URL="$URL" DB_SSLMODE="${DB_SSLMODE:-disable}" keys_create "$B/issuance" ab 1000000
    export ISSUER_KEY VERIFIER_KEY
fi

B_URL=$URL
if [ -n "${AB_PGBOUNCER:-}" ]; then
    upstream=$(psql "$DATABASE_URL" -Atc "SELECT coalesce(host(inet_server_addr()), '127.0.0.1') || ' ' || coalesce(inet_server_port(), 5432) || ' ' || current_database()")
    # shellcheck disable=SC2086 # host, port, database
    pgb_start "$AB_PGBOUNCER" $upstream "$SCHEMA"
    B_URL="postgres://postgres@127.0.0.1:$AB_PGBOUNCER/kc"
fi

start() { # bin_dir port name
    local url=$URL extra=${A_ENV:-}
    [ "$3" = b ] && url=$B_URL extra=${B_ENV:-}
    # shellcheck disable=SC2086 # VAR=value words
    DATABASE_URL="$url" PORT=$2 METRICS_PORT=$(($2 + 100)) BIND_ADDR=127.0.0.1 WORKER_ID="ab-$3" \
        RUN_MIGRATIONS=false DB_SSLMODE="${DB_SSLMODE:-disable}" LOG_LEVEL=warn \
        env "${KEYS_UNSET[@]}" $extra "$1/$SERVICE" >"$OUT/$3.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 100); do
        # With keys, the task must also have loaded the clients (503 until then).
        PORT=$2 "$1/$SERVICE" healthcheck 2>/dev/null && keys_loaded "$SERVICE" "$2" && return 0
        sleep 0.05
    done
    echo "$3 did not start; see $OUT/$3.log" >&2
    exit 1
}
start "$A" "$PORT_BASE" a
start "$B" $((PORT_BASE + 1)) b

# Clock ticks (USER_HZ) the task has run, user + system.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
: >"$OUT/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    for side in a b; do
        port=$PORT_BASE pid=${PIDS[0]}
        [ "$side" = b ] && port=$((PORT_BASE + 1)) pid=${PIDS[1]}
        before=$(cpu_ticks "$pid")
        IDS_FILE="$OUT/ids.txt" wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_EACH}s" --timeout 5s \
            -s "load/wrk/$LUA" "http://127.0.0.1:$port" >"$OUT/wrk.txt" 2>&1
        printf '%s %s %s %s\n' "$side" "$round" "$(($(cpu_ticks "$pid") - before))" \
            "$(sed -n 's/^WRK_JSON //p' "$OUT/wrk.txt")" >>"$OUT/results.txt"
        printf '[ab] round %d %s done\n' "$round" "$side" >&2
    done
done
python3 load/ab_report.py "$SERVICE" "$A" "$B" "$(getconf CLK_TCK)" <"$OUT/results.txt"
