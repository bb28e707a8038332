#!/usr/bin/env bash
# Runs the services locally on a real PostgreSQL: one issuance task on
# ISSUANCE_PORT (3001) and one verification task on VERIFICATION_PORT (3002).
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

ISSUANCE_PORT=${ISSUANCE_PORT:-3001}
VERIFICATION_PORT=${VERIFICATION_PORT:-3002}
RUN_DIR=target/up
PID_FILE=$RUN_DIR/pids

say() { printf '[up] %s\n' "$*"; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p "$RUN_DIR"
if [ -f "$PID_FILE" ]; then
    while read -r pid; do
        if kill -0 "$pid" 2>/dev/null; then
            say "already running (pid $pid from $PID_FILE); stop that one first (Ctrl-C in its terminal)"
            exit 1
        fi
    done <"$PID_FILE"
    rm -f "$PID_FILE"
fi
for port in "$ISSUANCE_PORT" "$VERIFICATION_PORT"; do
    if port_busy "$port"; then
        say "port $port is in use; free it or set ISSUANCE_PORT/VERIFICATION_PORT"
        exit 1
    fi
done

say "building release binaries"
cargo build --release --bin issuance --bin verification

ensure_postgres

PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - INT TERM EXIT
    if [ ${#PIDS[@]} -gt 0 ]; then
        say "stopping tasks"
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    pg_stop_private
    rm -f "$PID_FILE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "migrating"
target/release/issuance migrate

start_task() { # service port worker-id
    local log="$RUN_DIR/$3.log"
    PORT=$2 WORKER_ID=$3 RUN_MIGRATIONS=false LOG_FORMAT=${LOG_FORMAT:-text} \
        "target/release/$1" >"$log" 2>&1 &
    PIDS+=("$!")
    echo "$!" >>"$PID_FILE"
    for _ in $(seq 1 100); do
        if PORT=$2 "target/release/$1" healthcheck 2>/dev/null; then
            say "$3 ready on http://127.0.0.1:$2 (log: $log)"
            return
        fi
        if ! kill -0 "$!" 2>/dev/null; then
            say "$3 exited; its log:"
            cat "$log"
            exit 1
        fi
        sleep 0.1
    done
    say "$3 did not become ready; see $log"
    exit 1
}

start_task issuance "$ISSUANCE_PORT" issuance-1
start_task verification "$VERIFICATION_PORT" verification-1

I="http://127.0.0.1:$ISSUANCE_PORT"
V="http://127.0.0.1:$VERIFICATION_PORT"
cat <<MSG

Both services are up. Try (in another terminal):

  # 201: issue a credential; 409 when you run it again
  curl -s -X POST $I/issuance/credentials -H 'Content-Type: application/json' \\
    -d '{"name":"John Doe","email":"john@example.com","credentialType":"Developer Certificate","metadata":{"organization":"Tech Corp"}}'

  # 200: verify it (paste the id from the answer above)
  curl -s -X POST $V/verification/credentials -H 'Content-Type: application/json' -d '{"id":"PASTE-ID-HERE"}'

  # 404: an id nobody issued
  curl -s -X POST $V/verification/credentials -H 'Content-Type: application/json' -d '{"id":"00000000-0000-4000-8000-000000000000"}'

  # 400: invalid input, every offending field listed
  curl -s -X POST $I/issuance/credentials -H 'Content-Type: application/json' -d '{"name":"","email":"nope"}'

  # health
  curl -s $I/health; curl -s $V/verification/health

Press Ctrl-C to stop.
MSG

# Exit (and clean up) as soon as either task stops.
wait -n "${PIDS[@]}"
say "a task exited; see the logs in $RUN_DIR"
exit 1
