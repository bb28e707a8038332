#!/usr/bin/env bash
# The local twin of production: ISSUANCE_TASKS issuance tasks and
# VERIFICATION_TASKS verification tasks (3 each by default) on a real PostgreSQL,
# behind nginx on LB_PORT (8080) behaving like the ALB (path routing, round robin,
# keep-alive, passive health checks).
#
#   scripts/up.sh            run in the foreground; Ctrl-C stops everything it started
#   scripts/up.sh --detach   start everything and return; scripts/down.sh stops it
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/twin.sh
source scripts/lib/twin.sh

DETACH=""
for arg in "$@"; do
    case "$arg" in
        --detach | -d) DETACH=1 ;;
        --help | -h)
            cat <<'HELP'
scripts/up.sh [--detach]

The local twin of production: ISSUANCE_TASKS issuance tasks and VERIFICATION_TASKS
verification tasks on a real PostgreSQL, behind nginx on 127.0.0.1:LB_PORT.

  scripts/up.sh            run in the foreground; Ctrl-C stops everything it started
  scripts/up.sh --detach   start everything and return; scripts/down.sh stops it

Environment: ISSUANCE_TASKS, VERIFICATION_TASKS (1-8, default 3), LB_PORT (8080),
ISSUANCE_PORT_BASE (3000: issuance-N listens on BASE+N), VERIFICATION_PORT_BASE (3100),
TWIN_DIR (target/twin), DATABASE_URL (see scripts/lib/postgres.sh), LOG_FORMAT (text).
HELP
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

ISSUANCE_TASKS=${ISSUANCE_TASKS:-3}
VERIFICATION_TASKS=${VERIFICATION_TASKS:-3}
LB_PORT=${LB_PORT:-8080}
ISSUANCE_PORT_BASE=${ISSUANCE_PORT_BASE:-3000}
VERIFICATION_PORT_BASE=${VERIFICATION_PORT_BASE:-3100}

for var in ISSUANCE_TASKS VERIFICATION_TASKS; do
    if ! [[ ${!var} =~ ^[1-8]$ ]]; then
        echo "$var must be a number from 1 to 8 (got '${!var}')" >&2
        exit 2
    fi
done

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running=$(twin_running_pids)
if [ -n "$running" ]; then
    twin_say "a twin is already running (pids: $(echo "$running" | tr '\n' ' ')); stop it with scripts/down.sh or Ctrl-C in its terminal"
    exit 1
fi
rm -f "$TWIN_PIDS" "$TWIN_PG"
mkdir -p "$TWIN_DIR"

ports=("$LB_PORT")
for n in $(seq 1 "$ISSUANCE_TASKS"); do ports+=($((ISSUANCE_PORT_BASE + n))); done
for n in $(seq 1 "$VERIFICATION_TASKS"); do ports+=($((VERIFICATION_PORT_BASE + n))); done
for port in "${ports[@]}"; do
    if port_busy "$port"; then
        twin_say "port $port is in use; free it or choose other ports (see --help)"
        exit 1
    fi
done

NGINX=$(command -v nginx || true)
if [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ]; then
    NGINX=/usr/sbin/nginx # Debian keeps it out of a normal user's PATH
fi
if [ -z "$NGINX" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        twin_say "nginx is not installed. Install it, then run this again:"
        twin_say "    sudo apt-get update && sudo apt-get install -y nginx"
        exit 1
    fi
    twin_say "installing Debian's nginx package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
    NGINX=/usr/sbin/nginx
fi

twin_say "building release binaries"
cargo build --release --bin issuance --bin verification

ensure_postgres
if [ -n "$KC_PG_STARTED" ]; then
    printf '%s\n' "$KC_PG_DIR" "${KC_PG_RUNAS[@]}" >"$TWIN_PG"
fi

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT
    twin_stop_processes
    pg_stop_private
    rm -f "$TWIN_PG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

twin_say "migrating"
target/release/issuance migrate

# Detached processes get their own session so closing the terminal leaves them be.
launch() { # log-file command...
    local log=$1
    shift
    if [ -n "$DETACH" ]; then
        setsid "$@" >"$log" 2>&1 </dev/null &
    else
        "$@" >"$log" 2>&1 </dev/null &
    fi
}

start_task() { # service n port
    local name="$1-$2" port=$3 pid
    PORT=$port BIND_ADDR=127.0.0.1 WORKER_ID=$name RUN_MIGRATIONS=false LOG_FORMAT=${LOG_FORMAT:-text} \
        launch "$TWIN_DIR/$name.log" "target/release/$1"
    pid=$!
    echo "$name $pid" >>"$TWIN_PIDS"
    for _ in $(seq 1 100); do
        if PORT=$port "target/release/$1" healthcheck 2>/dev/null; then
            twin_say "$name ready on 127.0.0.1:$port (log: $TWIN_DIR/$name.log)"
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            twin_say "$name exited; its log:"
            cat "$TWIN_DIR/$name.log"
            exit 1
        fi
        sleep 0.1
    done
    twin_say "$name did not become ready; see $TWIN_DIR/$name.log"
    exit 1
}

# The balancer goes first in the pid file so down.sh stops it before the tasks.
: >"$TWIN_PIDS"
upstreams() { # base count
    local n
    for n in $(seq 1 "$2"); do
        printf 'server 127.0.0.1:%d max_fails=1 fail_timeout=10s;\n    ' $(($1 + n))
    done
}
mkdir -p "$TWIN_DIR/nginx/conf.d" "$TWIN_DIR/nginx/temp"
# Render the template with bash alone (no envsubst needed): only these three
# names are replaced, nginx's own $variables stay as they are.
# shellcheck disable=SC2016 # the placeholders are literal text
render() {
    local t
    t=$(<deploy/nginx/kube-credential.conf.template)
    t=${t//'${LB_LISTEN}'/127.0.0.1:$LB_PORT}
    t=${t//'${ISSUANCE_UPSTREAMS}'/$(upstreams "$ISSUANCE_PORT_BASE" "$ISSUANCE_TASKS")}
    t=${t//'${VERIFICATION_UPSTREAMS}'/$(upstreams "$VERIFICATION_PORT_BASE" "$VERIFICATION_TASKS")}
    printf '%s\n' "$t"
}
render >"$TWIN_DIR/nginx/conf.d/kube-credential.conf"
NGINX_PREFIX=$(cd "$TWIN_DIR/nginx" && pwd)
cat >"$TWIN_DIR/nginx/nginx.conf" <<CONF
# Generated by scripts/up.sh; the routing lives in conf.d/ (from deploy/nginx/).
daemon off;
worker_processes 1;
pid $NGINX_PREFIX/nginx.pid;
error_log $NGINX_PREFIX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_buffer_size 1m;
    client_body_temp_path $NGINX_PREFIX/temp/body;
    proxy_temp_path $NGINX_PREFIX/temp/proxy;
    fastcgi_temp_path $NGINX_PREFIX/temp/fastcgi;
    uwsgi_temp_path $NGINX_PREFIX/temp/uwsgi;
    scgi_temp_path $NGINX_PREFIX/temp/scgi;
    include $NGINX_PREFIX/conf.d/*.conf;
}
CONF
"$NGINX" -t -q -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" -e "$NGINX_PREFIX/error.log"

for n in $(seq 1 "$ISSUANCE_TASKS"); do start_task issuance "$n" $((ISSUANCE_PORT_BASE + n)); done
for n in $(seq 1 "$VERIFICATION_TASKS"); do start_task verification "$n" $((VERIFICATION_PORT_BASE + n)); done

launch "$TWIN_DIR/nginx/stdout.log" "$NGINX" -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" -e "$NGINX_PREFIX/error.log"
sed -i "1i nginx $!" "$TWIN_PIDS"
for _ in $(seq 1 50); do
    if [ "$(http_status "$LB_PORT" /issuance/health)" = 200 ] && [ "$(http_status "$LB_PORT" /verification/health)" = 200 ]; then
        break
    fi
    sleep 0.1
done
if [ "$(http_status "$LB_PORT" /issuance/health)" != 200 ]; then
    twin_say "the load balancer does not answer on :$LB_PORT; see $NGINX_PREFIX/error.log"
    exit 1
fi
twin_say "load balancer on http://127.0.0.1:$LB_PORT ($ISSUANCE_TASKS issuance + $VERIFICATION_TASKS verification tasks)"

LB="http://127.0.0.1:$LB_PORT"
cat <<MSG

Ready. Try (in another terminal):

  # 201: issue a credential (409 when you run it again); X-Worker-Id names the task
  curl -si -X POST $LB/issuance/credentials -H 'Content-Type: application/json' \\
    -d '{"name":"John Doe","email":"john@example.com","credentialType":"Developer Certificate","metadata":{"organization":"Tech Corp"}}'

  # 200: verify it (paste the id from the answer above)
  curl -s -X POST $LB/verification/credentials -H 'Content-Type: application/json' -d '{"id":"PASTE-ID-HERE"}'

  # 404: an id nobody issued
  curl -s -X POST $LB/verification/credentials -H 'Content-Type: application/json' -d '{"id":"00000000-0000-4000-8000-000000000000"}'

  # 400: invalid input, every offending field listed
  curl -s -X POST $LB/issuance/credentials -H 'Content-Type: application/json' -d '{"name":"","email":"nope"}'

  # health of each group, as the ALB checks it; load spreading with k6
  curl -s $LB/issuance/health; curl -s $LB/verification/health
  k6 run load/distribution.js

MSG

if [ -n "$DETACH" ]; then
    trap - EXIT INT TERM
    twin_say "detached; stop it with scripts/down.sh"
    exit 0
fi
echo "Press Ctrl-C to stop."
# Stay until Ctrl-C or until the balancer dies. A task that dies is reported and
# left dead, like a stopped ECS task: the balancer routes around it.
declare -A reported=()
while true; do
    while read -r name pid; do
        if ! kill -0 "$pid" 2>/dev/null && [ -z "${reported[$name]:-}" ]; then
            reported[$name]=1
            twin_say "$name (pid $pid) exited; the load balancer skips it (log: $TWIN_DIR/$name.log)"
            if [ "$name" = nginx ]; then
                exit 1
            fi
        fi
    done <"$TWIN_PIDS"
    sleep 1
done
