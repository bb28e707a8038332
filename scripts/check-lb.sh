#!/usr/bin/env bash
# ALB-fidelity checks against a running twin (scripts/up.sh --detach):
#
#   scripts/check-lb.sh           what a client sees (scripts/lib/check_lb.py checks, access
#                                 control with the keys up.sh wrote to TWIN_DIR/keys.env), then
#                                 what a target sees, through a stand-in target registered
#                                 in the issuance target group for a moment
#   scripts/check-lb.sh --idle    also a keep-alive connection idle for 65 s (slow)
#
# Environment: TWIN_DIR (target/twin), LB_PORT (8080), ISSUANCE_TASKS and
# VERIFICATION_TASKS (3: how many tasks each group should have).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/twin.sh
source scripts/lib/twin.sh

IDLE=()
for arg in "$@"; do
    case "$arg" in
        --idle) IDLE=(--idle) ;;
        *)
            echo "usage: scripts/check-lb.sh [--idle]" >&2
            exit 2
            ;;
    esac
done
LB_PORT=${LB_PORT:-8080}
if [ -z "$(twin_running_pids)" ] || ! grep -q '^nginx-targets ' "$TWIN_PIDS"; then
    twin_say "no twin is running in $TWIN_DIR; start one with scripts/up.sh --detach"
    exit 1
fi

status=0
python3 scripts/lib/check_lb.py checks --lb "http://127.0.0.1:$LB_PORT" --twin-dir "$TWIN_DIR" \
    --issuance-tasks "${ISSUANCE_TASKS:-3}" --verification-tasks "${VERIFICATION_TASKS:-3}" "${IDLE[@]}" || status=1

# A stand-in target that echoes the headers it gets, registered as issuance-0.
port=$(twin_free_port 39000)
python3 scripts/lib/check_lb.py echo --port "$port" >"$TWIN_DIR/echo-target.log" 2>&1 &
echo_pid=$!
# shellcheck disable=SC2317 # invoked by the EXIT trap
deregister() {
    if grep -q '^issuance-0 ' "$TWIN_PIDS" 2>/dev/null; then
        twin_remove_entry issuance-0
        twin_reload_targets || true
    fi
    kill "$echo_pid" 2>/dev/null || true
}
trap deregister EXIT
for _ in $(seq 1 50); do
    port_busy "$port" && break
    sleep 0.1
done
twin_add_entry issuance-0 "$echo_pid" "$port" - registered
twin_reload_targets
python3 scripts/lib/check_lb.py forwarded --lb "http://127.0.0.1:$LB_PORT" --lb-port "$LB_PORT" || status=1
exit "$status"
