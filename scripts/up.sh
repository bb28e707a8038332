#!/usr/bin/env bash
# The local twin of production: ISSUANCE_TASKS issuance tasks and
# VERIFICATION_TASKS verification tasks (3 each by default) on a real PostgreSQL,
# behind two nginx processes on LB_PORT (8080) behaving like the ALB: a listener
# (path routing, keep-alive, X-Amzn-Trace-Id) that is never reloaded, and target
# groups (round robin, no passive bans) that scripts/rollout.sh re-renders and
# reloads to register and deregister tasks.
#
#   scripts/up.sh            run in the foreground; Ctrl-C stops everything it started
#   scripts/up.sh --detach   start everything and return; scripts/down.sh stops it
#
# Authentication is on, as in production (AUTH_MODE=required): up.sh makes an
# issuer and a verifier and writes their keys to TWIN_DIR/keys.env (mode 600).
# Off by default: TWIN_POOLER=pgbouncer puts PgBouncer (transaction mode) between
# the tasks and the database, TWIN_REPLICA=1 a streaming replica behind
# verification (scripts/lib/twin-db.sh).
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

TWIN_DETACH=""
for arg in "$@"; do
    case "$arg" in
        --detach | -d) TWIN_DETACH=1 ;;
        --help | -h)
            cat <<'HELP'
scripts/up.sh [--detach]

The local twin of production: ISSUANCE_TASKS issuance tasks and VERIFICATION_TASKS
verification tasks on a real PostgreSQL, behind nginx on 127.0.0.1:LB_PORT.

  scripts/up.sh            run in the foreground; Ctrl-C stops everything it started
  scripts/up.sh --detach   start everything and return; scripts/down.sh stops it

Then scripts/rollout.sh replaces tasks like an ECS rolling deployment.

Environment: ISSUANCE_TASKS, VERIFICATION_TASKS (1-8, default 3), LB_PORT (8080),
ISSUANCE_PORT_BASE (3000: issuance-N listens on BASE+N), VERIFICATION_PORT_BASE (3100),
METRICS_PORT_BASE (9400: issuance-N serves /metrics on BASE+N, verification-N on
BASE+100+N), TASK_CPU (vCPUs per task, e.g. 0.25) and TASK_MEMORY_MB (e.g. 512): each
task in a cgroup of its own with that CPU quota and memory limit, WITH_PROMETHEUS=1
(a Prometheus scraping every task, on PROMETHEUS_PORT, default 9090), TWIN_DIR
(target/twin), DATABASE_URL (see scripts/lib/postgres.sh), LOG_FORMAT (text).

The database tier, both off by default:
  TWIN_POOLER=pgbouncer  the tasks (and the migrations) reach the database through a
                         PgBouncer of the twin's own in transaction mode, with
                         DB_POOLER=transaction (DATABASE_URL must then be
                         postgres://postgres@HOST:PORT/DB, as the found server's is)
  TWIN_REPLICA=1         the twin runs on a private primary it starts and a streaming
                         replica of it (pg_basebackup -R); verification reads from the
                         replica (DATABASE_READ_URL). DATABASE_URL is then not used.

Authentication: AUTH_MODE (required, the default, or off: nothing is checked, for local
trials only). With it on, up.sh makes an issuer and a verifier (unique names) after the
migrations, each with its own rate limit of TWIN_CLIENT_RATE_LIMIT requests/s per task
(default 1000000, 1-2147483647), writes ISSUER_KEY and VERIFIER_KEY (and their client
names) to TWIN_DIR/keys.env, readable by you only, and prints them with curl commands;
scripts/down.sh revokes them. For k6:  set -a; . TWIN_DIR/keys.env; set +a
The tasks get TRUSTED_PROXY_HOPS=1 (the caller's address is the X-Forwarded-For entry
the twin's listener appends); CLIENT_RATE_LIMIT and ANONYMOUS_RATE_LIMIT (20/s per
address without a key) pass through like every other variable of the services.
HELP
            exit 0
            ;;
        *) twin_unknown_arg "$arg" ;;
    esac
done

ISSUANCE_TASKS=${ISSUANCE_TASKS:-3}
TWIN_CLIENT_RATE_LIMIT=${TWIN_CLIENT_RATE_LIMIT:-1000000}
VERIFICATION_TASKS=${VERIFICATION_TASKS:-3}
LB_PORT=${LB_PORT:-8080}
ISSUANCE_PORT_BASE=${ISSUANCE_PORT_BASE:-3000}
VERIFICATION_PORT_BASE=${VERIFICATION_PORT_BASE:-3100}
METRICS_PORT_BASE=${METRICS_PORT_BASE:-9400}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}

for var in ISSUANCE_TASKS VERIFICATION_TASKS; do
    if ! [[ ${!var} =~ ^[1-8]$ ]]; then
        echo "$var must be a number from 1 to 8 (got '${!var}')" >&2
        exit 2
    fi
done
case "$(printf '%s' "${AUTH_MODE:-required}" | tr '[:upper:]' '[:lower:]')" in
    required | off) ;;
    *)
        echo "AUTH_MODE must be required or off (got '$AUTH_MODE')" >&2
        exit 2
        ;;
esac
twin_db_check_args
if ! [[ $TWIN_CLIENT_RATE_LIMIT =~ ^[1-9][0-9]{0,9}$ ]] || [ "$TWIN_CLIENT_RATE_LIMIT" -gt 2147483647 ]; then
    echo "TWIN_CLIENT_RATE_LIMIT must be a whole number from 1 to 2147483647 (got '$TWIN_CLIENT_RATE_LIMIT')" >&2
    exit 2
fi
# The tasks' access control, in task.env for rollout.sh's replacements too: keys as
# in production unless AUTH_MODE=off, and the caller's address from the one proxy
# hop that appends to X-Forwarded-For (the listener; the target groups pass it on).
export AUTH_MODE=${AUTH_MODE:-required} TRUSTED_PROXY_HOPS=1
cg_init || exit 2

running=$(twin_running_pids)
if [ -n "$running" ]; then
    twin_say "a twin is already running (pids: $(echo "$running" | tr '\n' ' ')); stop it with scripts/down.sh or Ctrl-C in its terminal"
    exit 1
fi
rm -f "$TWIN_PIDS" "$TWIN_PG" "$TWIN_KEYS" "$TWIN_DB"
mkdir -p "$TWIN_DIR"

ports=("$LB_PORT")
for n in $(seq 1 "$ISSUANCE_TASKS"); do ports+=($((ISSUANCE_PORT_BASE + n)) $((METRICS_PORT_BASE + n))); done
for n in $(seq 1 "$VERIFICATION_TASKS"); do ports+=($((VERIFICATION_PORT_BASE + n)) $((METRICS_PORT_BASE + 100 + n))); done
[ -n "${WITH_PROMETHEUS:-}" ] && ports+=("$PROMETHEUS_PORT")
for port in "${ports[@]}"; do
    if port_busy "$port"; then
        twin_say "port $port is in use; free it or choose other ports (see --help)"
        exit 1
    fi
done

# Installs Debian packages when running as root; otherwise says what to run.
need_packages() { # what package...
    local what=$1
    shift
    if [ "$(id -u)" -ne 0 ]; then
        twin_say "$what is not installed. Install it, then run this again:"
        twin_say "    sudo apt-get update && sudo apt-get install -y $*"
        exit 1
    fi
    twin_say "installing Debian's $* package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
NGINX=$(twin_nginx || true)
if [ -z "$NGINX" ]; then
    need_packages nginx nginx libnginx-mod-http-js
    NGINX=$(twin_nginx)
fi
# The listener adds X-Amzn-Trace-Id with njs.
NJS_MODULE=$(twin_njs_module "$NGINX" || true)
if [ -z "$NJS_MODULE" ]; then
    need_packages "nginx's njs module" libnginx-mod-http-js
    NJS_MODULE=$(twin_njs_module "$NGINX")
fi
if [ -n "${TWIN_POOLER:-}" ] && [ -z "$(pgb_bin || true)" ]; then
    need_packages pgbouncer pgbouncer
fi
if [ -n "${WITH_PROMETHEUS:-}" ] && ! command -v prometheus >/dev/null 2>&1; then
    need_packages prometheus prometheus
fi

twin_say "building release binaries"
cargo build --release --bin issuance --bin verification

if twin_db_replica_wanted; then
    unset DATABASE_URL # the twin's own primary, started below
else
    ensure_postgres
fi
if [ -n "$KC_PG_STARTED" ]; then
    printf '%s\n' "$KC_PG_DIR" "${KC_PG_RUNAS[@]}" >"$TWIN_PG"
fi

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT
    twin_stop_processes
    twin_revoke_keys
    twin_db_stop
    pg_stop_private
    rm -f "$TWIN_PG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
twin_db_start || exit 1

twin_say "migrating"
target/release/issuance migrate
if keys_auth_on; then
    twin_say "making the twin's API clients (an issuer and a verifier, $TWIN_CLIENT_RATE_LIMIT requests/s per task each)"
    keys_create target/release/issuance twin "$TWIN_CLIENT_RATE_LIMIT" || {
        twin_say "could not make the API clients (issuance clients add)"
        exit 1
    }
    keys_write "$TWIN_KEYS"
else
    twin_say "AUTH_MODE=off: no keys are checked; anyone may issue and read every credential"
fi

# The tasks' environment, for the replacements rollout.sh starts (the same
# task definition: database, service settings, task size unless rollout.sh is
# given another).
{
    for name in $(compgen -e); do
        case "$name" in
            # The shell's own, and the twin scripts' settings: rollout.sh takes those
            # from its own environment.
            PWD | OLDPWD | SHLVL | _ | TASK_CPU | TASK_MEMORY_MB | TWIN_* | LB_PORT | *_PORT_BASE | \
                *_TASKS | WITH_PROMETHEUS | PROMETHEUS_PORT | DRAIN_SECONDS | STOP_TIMEOUT) continue ;;
            # The keys of a twin (one's own shell may have them): the tasks need none.
            ISSUER_* | VERIFIER_*) continue ;;
        esac
        decl=$(declare -p "$name")
        [[ $decl == "declare -x "* ]] && printf '%s\n' "$decl"
    done
    # shellcheck disable=SC2016 # expanded when rollout.sh reads the file
    printf 'TASK_CPU=${TASK_CPU-%q}\n' "${TASK_CPU:-}"
    # shellcheck disable=SC2016
    printf 'TASK_MEMORY_MB=${TASK_MEMORY_MB-%q}\n' "${TASK_MEMORY_MB:-}"
} >"$TWIN_ENV"

# The target groups listen on a unix socket; its path must stay short (108
# bytes), hence a directory under /tmp rather than under TWIN_DIR.
mktemp -d "${TMPDIR:-/tmp}/kc-twin.XXXXXX" >"$TWIN_SOCKETS"
SOCKET_DIR=$(cat "$TWIN_SOCKETS")
# Run as root, nginx's workers run as another user and must reach the socket.
chmod 755 "$SOCKET_DIR"

if cg_wanted && [ -n "$KC_CG_VERSION" ]; then
    twin_say "tasks sized like Fargate: ${TASK_CPU:-unlimited} vCPU, ${TASK_MEMORY_MB:-unlimited} MB each (cgroup v$KC_CG_VERSION)"
fi
: >"$TWIN_PIDS"
for n in $(seq 1 "$ISSUANCE_TASKS"); do
    twin_start_task issuance "issuance-$n" $((ISSUANCE_PORT_BASE + n)) $((METRICS_PORT_BASE + n)) registered || exit 1
done
for n in $(seq 1 "$VERIFICATION_TASKS"); do
    twin_start_task verification "verification-$n" $((VERIFICATION_PORT_BASE + n)) $((METRICS_PORT_BASE + 100 + n)) registered || exit 1
done

# The target groups, then the listener in front of them.
for part in nginx nginx-targets; do
    mkdir -p "$TWIN_DIR/$part/conf.d" "$TWIN_DIR/$part/temp"
done
LISTENER_PREFIX=$(cd "$TWIN_DIR/nginx" && pwd)
TARGETS_PREFIX=$(cd "$TWIN_DIR/nginx-targets" && pwd)
twin_nginx_main_conf "$LISTENER_PREFIX" "$NJS_MODULE" >"$LISTENER_PREFIX/nginx.conf"
twin_nginx_main_conf "$TARGETS_PREFIX" >"$TARGETS_PREFIX/nginx.conf"
twin_render deploy/nginx/kube-credential.conf.template "LB_LISTEN=127.0.0.1:$LB_PORT" \
    "TG_SOCKET_DIR=$SOCKET_DIR" "NJS_PATH=$(cd deploy/nginx && pwd)" >"$LISTENER_PREFIX/conf.d/kube-credential.conf"
twin_render_targets
# shellcheck disable=SC2046 # twin_nginx_args prints separate words
{
    "$NGINX" -t -q $(twin_nginx_args "$TARGETS_PREFIX")
    "$NGINX" -t -q $(twin_nginx_args "$LISTENER_PREFIX")
}
# shellcheck disable=SC2046
twin_launch "$TARGETS_PREFIX/stdout.log" "$NGINX" $(twin_nginx_args "$TARGETS_PREFIX")
sed -i "1i nginx-targets $! - - -" "$TWIN_PIDS"
# shellcheck disable=SC2046
twin_launch "$LISTENER_PREFIX/stdout.log" "$NGINX" $(twin_nginx_args "$LISTENER_PREFIX")
# The listener goes first in the pid file so down.sh stops it before the rest.
sed -i "1i nginx-listener $! $LB_PORT - -" "$TWIN_PIDS"
for _ in $(seq 1 50); do
    if [ "$(http_status "$LB_PORT" /issuance/health)" = 200 ] && [ "$(http_status "$LB_PORT" /verification/health)" = 200 ]; then
        break
    fi
    sleep 0.1
done
if [ "$(http_status "$LB_PORT" /issuance/health)" != 200 ] || [ "$(http_status "$LB_PORT" /verification/health)" != 200 ]; then
    twin_say "the load balancer does not answer on :$LB_PORT; see $LISTENER_PREFIX/error.log and $TARGETS_PREFIX/error.log"
    exit 1
fi
twin_say "load balancer on http://127.0.0.1:$LB_PORT ($ISSUANCE_TASKS issuance + $VERIFICATION_TASKS verification tasks)"

if [ -n "${WITH_PROMETHEUS:-}" ]; then
    PROM_DIR=$(mkdir -p "$TWIN_DIR/prometheus" && cd "$TWIN_DIR/prometheus" && pwd)
    twin_write_prometheus_targets
    twin_render deploy/prometheus/prometheus.yml.template "TARGETS_FILE=$PROM_DIR/targets.json" >"$PROM_DIR/prometheus.yml"
    # The remote-write receiver lets k6 stream into it (k6 run -o experimental-prometheus-rw).
    twin_launch "$PROM_DIR/prometheus.log" prometheus --config.file="$PROM_DIR/prometheus.yml" \
        --storage.tsdb.path="$PROM_DIR/data" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --web.enable-remote-write-receiver --log.level=warn
    twin_add_entry prometheus "$!" "$PROMETHEUS_PORT" - -
    for _ in $(seq 1 100); do
        [ "$(http_status "$PROMETHEUS_PORT" /-/ready)" = 200 ] && break
        sleep 0.1
    done
    if [ "$(http_status "$PROMETHEUS_PORT" /-/ready)" != 200 ]; then
        twin_say "prometheus did not become ready; see $PROM_DIR/prometheus.log"
        exit 1
    fi
    twin_say "prometheus on http://127.0.0.1:$PROMETHEUS_PORT (targets: http://127.0.0.1:$PROMETHEUS_PORT/targets)"
fi

LB="http://127.0.0.1:$LB_PORT"
POST="curl -s -X POST -H 'Content-Type: application/json'"
POST_I=${POST/curl -s/curl -si} # with the status line and headers
CREDENTIAL='{"name":"John Doe","email":"john@example.com","credentialType":"Developer Certificate","metadata":{"organization":"Tech Corp"}}'
if keys_auth_on; then
    AS_ISSUER=" -H 'Authorization: Bearer $ISSUER_KEY'"
    AS_VERIFIER=" -H 'Authorization: Bearer $VERIFIER_KEY'"
    cat <<MSG

Ready. Authentication is on (AUTH_MODE=required). The twin's API keys, also in
$TWIN_KEYS (readable by you only; scripts/down.sh revokes them):

  ISSUER_KEY=$ISSUER_KEY     (client $ISSUER_NAME)
  VERIFIER_KEY=$VERIFIER_KEY   (client $VERIFIER_NAME)

Try (in another terminal):

  # 201: issue a credential with the issuer key (409 when you run it again); X-Worker-Id names the task
  $POST_I$AS_ISSUER \\
    $LB/issuance/credentials -d '$CREDENTIAL'

  # 401 (WWW-Authenticate: Bearer): issuing without a key
  $POST_I $LB/issuance/credentials -d '$CREDENTIAL'

  # 200: verify it with the verifier key, which sees the whole credential (paste the id from the 201)
  $POST$AS_VERIFIER \\
    $LB/verification/credentials -d '{"id":"PASTE-ID-HERE"}'

  # 200: verify it without a key: the public view (id, type, issuer, issue time); ${ANONYMOUS_RATE_LIMIT:-20} requests/s per address
  $POST $LB/verification/credentials -d '{"id":"PASTE-ID-HERE"}'

  # 200: without a key but with the holder's name and email: the whole credential
  $POST $LB/verification/credentials -d '{"id":"PASTE-ID-HERE","name":"John Doe","email":"john@example.com"}'
MSG
else
    AS_ISSUER="" AS_VERIFIER=""
    cat <<MSG

Ready. AUTH_MODE=off: no keys are checked, anyone may issue and read every credential.

Try (in another terminal):

  # 201: issue a credential (409 when you run it again); X-Worker-Id names the task
  $POST_I $LB/issuance/credentials -d '$CREDENTIAL'

  # 200: verify it (paste the id from the 201)
  $POST $LB/verification/credentials -d '{"id":"PASTE-ID-HERE"}'
MSG
fi
cat <<MSG

  # 404: an id nobody issued
  $POST$AS_VERIFIER \\
    $LB/verification/credentials -d '{"id":"00000000-0000-4000-8000-000000000000"}'

  # 400: invalid input, every offending field listed
  $POST$AS_ISSUER \\
    $LB/issuance/credentials -d '{"name":"","email":"nope"}'

  # health of each group, as the ALB checks it; load spreading with k6 (with the keys, when on)
  curl -s $LB/issuance/health; curl -s $LB/verification/health
  $(keys_auth_on && echo "set -a; . $TWIN_KEYS; set +a; ")k6 run load/distribution.js

  # replace every task, one by one, like an ECS rolling deployment
  scripts/rollout.sh all

MSG
if [ -n "$TWIN_DETACH" ]; then
    trap - EXIT INT TERM
    twin_say "detached; stop it with scripts/down.sh"
    exit 0
fi
echo "Press Ctrl-C to stop."
# Stay until Ctrl-C or until a balancer process dies. A task that dies is
# reported and left dead, like a stopped ECS task: the target group moves its
# refused connections to the other tasks. Tasks rollout.sh drains are its own.
declare -A reported=()
while true; do
    while read -r name pid _ _ state; do
        if [ "$state" != draining ] && [ "$state" != restarting ] && ! kill -0 "$pid" 2>/dev/null && [ -z "${reported[$name]:-}" ]; then
            reported[$name]=1
            why=exited
            if cg_oom_killed "$(twin_cgroup)" "$name"; then why="was killed by the kernel's OOM killer (TASK_MEMORY_MB=$TASK_MEMORY_MB)"; fi
            twin_say "$name (pid $pid) $why; the load balancer skips it (log: $TWIN_DIR/$name.log)"
            if [[ $name == nginx-* ]]; then
                exit 1
            fi
        fi
    done <"$TWIN_PIDS"
    sleep 1
done
