#!/usr/bin/env bash
# Replaces a running twin's tasks one by one, as an ECS rolling deployment does:
#
#   scripts/rollout.sh [issuance|verification|all] [--no-build] [--in-place]
#
# For each task: start the replacement on a new port (with the twin's
# environment and task size, access control included: AUTH_MODE and
# TRUSTED_PROXY_HOPS), wait until its /health answers 200 and it has loaded the
# API clients, register it
# (target groups re-rendered, their nginx reloaded), deregister the old task the
# same way, wait DRAIN_SECONDS (the target group's deregistration delay), then
# SIGTERM the old task and SIGKILL it if it has not exited after STOP_TIMEOUT
# seconds (ECS's stopTimeout). The pid file stays current throughout, so
# scripts/down.sh stops whatever runs.
#
# --in-place instead restarts each task where it is: SIGTERM, wait for its exit,
# start it again on the same port, with no deregistration (what happens to the
# requests of a task that restarts under load).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/twin.sh
source scripts/lib/twin.sh

SERVICES=""
BUILD=1
IN_PLACE=""
for arg in "$@"; do
    case "$arg" in
        issuance | verification) SERVICES=$arg ;;
        all) SERVICES="issuance verification" ;;
        --no-build) BUILD="" ;;
        --in-place) IN_PLACE=1 ;;
        --help | -h)
            cat <<'HELP'
scripts/rollout.sh [issuance|verification|all] [--no-build] [--in-place]

Replaces the running twin's tasks (all by default) one by one, like an ECS rolling
deployment: start the replacement on a new port, wait for its /health, register it,
deregister the old task, wait DRAIN_SECONDS, SIGTERM it (SIGKILL after STOP_TIMEOUT).

  --no-build   use the release binaries as they are (default: cargo build --release first)
  --in-place   restart each task on its own port instead (SIGTERM, wait, start again)

Environment: TWIN_DIR (target/twin), DRAIN_SECONDS (25, as deploy/cloudformation/alb.yml's
deregistration delay), STOP_TIMEOUT (30, as ecs.yml's stopTimeout), TASK_CPU and
TASK_MEMORY_MB (default: the size the twin was started with).
HELP
            exit 0
            ;;
        *) twin_unknown_arg "$arg" ;;
    esac
done
SERVICES=${SERVICES:-issuance verification}
DRAIN_SECONDS=${DRAIN_SECONDS:-25}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
for var in DRAIN_SECONDS STOP_TIMEOUT; do
    if ! [[ ${!var} =~ ^[0-9]+$ ]]; then
        echo "$var must be a whole number of seconds (got '${!var}')" >&2
        exit 2
    fi
done

if [ -z "$(twin_running_pids)" ] || ! grep -q '^nginx-targets ' "$TWIN_PIDS" || [ ! -f "$TWIN_ENV" ]; then
    twin_say "no twin is running${TWIN_DIR:+ in $TWIN_DIR}; start one with scripts/up.sh --detach"
    exit 1
fi
# The replacements get the environment the twin's tasks got (the same task
# definition); TASK_CPU/TASK_MEMORY_MB set here win over the twin's.
# shellcheck disable=SC1090
source "$TWIN_ENV"
# With keys on (task.env's AUTH_MODE), a replacement is registered only once it
# knows them (twin_start_task asks with the twin's keys).
keys_read "$TWIN_KEYS" || true
TWIN_DETACH=1
cg_init || exit 2

if [ -n "$BUILD" ]; then
    twin_say "building release binaries"
    cargo build --release --bin issuance --bin verification
fi

# The name of a service's next task: one more than the highest number in use.
next_name() { # service
    local top
    top=$(twin_tasks "$1" | awk '{ n = $1; sub(/.*-/, "", n); if (n + 0 > top) top = n + 0 } END { print top + 0 }')
    echo "$1-$((top + 1))"
}

# Prints the old task's cgroup figures (throttling, peak memory, OOM kills) and removes its cgroup.
retire_cgroup() { # name
    local report
    report=$(cg_report "$(twin_cgroup)" "$1")
    if [ -n "$report" ]; then twin_say "$report"; fi
    cg_remove "$(twin_cgroup)" "$1"
}

replace() { # service name pid port metrics
    local service=$1 old=$2 pid=$3 port=$4 metrics=$5 new new_port new_metrics took
    new=$(next_name "$service")
    new_port=$(twin_free_port $((port + 1)))
    new_metrics=$(twin_free_port $((metrics + 1)))
    twin_start_task "$service" "$new" "$new_port" "$new_metrics" registered || {
        twin_say "$new did not start; $old stays registered and the rollout stops"
        return 1
    }
    twin_reload_targets
    twin_write_prometheus_targets
    twin_say "$new registered; deregistering $old and draining it for ${DRAIN_SECONDS} s"
    twin_set_state "$old" draining
    twin_reload_targets
    sleep "$DRAIN_SECONDS"
    took=$(twin_stop_task "$old" "$pid" "$STOP_TIMEOUT")
    twin_remove_entry "$old"
    twin_write_prometheus_targets
    retire_cgroup "$old"
    twin_say "$old (port $port) replaced by $new (port $new_port); $old stopped ${took} s after SIGTERM"
}

restart_in_place() { # service name pid port metrics
    local service=$1 name=$2 pid=$3 port=$4 metrics=$5 took
    twin_set_state "$name" restarting
    took=$(twin_stop_task "$name" "$pid" "$STOP_TIMEOUT")
    twin_remove_entry "$name"
    retire_cgroup "$name"
    twin_start_task "$service" "$name" "$port" "$metrics" registered || return 1
    twin_say "$name restarted in place on port $port (the old process stopped ${took} s after SIGTERM)"
}

started=$SECONDS
count=0
for service in $SERVICES; do
    # The tasks registered when the rollout began; replacements are not replaced again.
    mapfile -t tasks < <(twin_tasks "$service" | awk '$5 == "registered" { print $1, $2, $3, $4 }')
    for task in "${tasks[@]}"; do
        read -r name pid port metrics <<<"$task"
        if [ -n "$IN_PLACE" ]; then
            restart_in_place "$service" "$name" "$pid" "$port" "$metrics" || exit 1
        else
            replace "$service" "$name" "$pid" "$port" "$metrics" || exit 1
        fi
        count=$((count + 1))
    done
done
twin_say "rollout done: $count task(s) $([ -n "$IN_PLACE" ] && echo "restarted in place" || echo replaced) in $((SECONDS - started)) s"
