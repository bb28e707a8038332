# shellcheck shell=bash disable=SC2034 # the variables are used by the scripts that source this
# Shared by up.sh, rollout.sh and down.sh: where the local twin keeps its state,
# how it starts a task, and how it renders and reloads its two nginx processes.
#
# The twin's processes are listed in TWIN_PIDS, one line each:
#   name pid port metrics-port state
# nginx-listener (the ALB's listener, on LB_PORT), nginx-targets (the target
# groups), then the tasks (issuance-N, verification-N; state starting,
# registered or draining) and prometheus when WITH_PROMETHEUS=1. "-" marks a
# field that does not apply.

TWIN_DIR=${TWIN_DIR:-target/twin} # another dir lets a second twin run beside (test.sh)
TWIN_PIDS=$TWIN_DIR/pids          # see above
TWIN_PG=$TWIN_DIR/postgres        # set when up.sh started a private PostgreSQL
TWIN_ENV=$TWIN_DIR/task.env       # the tasks' environment, for rollout.sh's replacements
TWIN_SOCKETS=$TWIN_DIR/sockets    # names the directory of the target groups' unix socket
TWIN_LOCK=$TWIN_DIR/pids.lock     # taken while the pid file changes
TWIN_KEYS=$TWIN_DIR/keys.env      # the twin's API keys (scripts/lib/keys.sh), mode 600

# shellcheck source=scripts/lib/cgroup.sh
source "$(dirname "${BASH_SOURCE[0]}")/cgroup.sh"
# shellcheck source=scripts/lib/keys.sh
source "$(dirname "${BASH_SOURCE[0]}")/keys.sh"

twin_say() { printf '[twin] %s\n' "$*"; }
# Refuses an argument the script does not know (exit 2, as for any usage error).
twin_unknown_arg() { # arg
    echo "unknown argument: $1 (try --help)" >&2
    exit 2
}

# The program an entry runs: issuance-2 runs issuance, nginx-targets nginx.
twin_program() { # name
    case "$1" in
        nginx-*) echo nginx ;;
        *) echo "${1%-[0-9]*}" ;;
    esac
}

# Whether pid still runs the program named by an entry: after a reboot the
# number may belong to something else.
twin_alive() { # name pid
    local comm
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    [ "$comm" = "$(twin_program "$1")" ]
}

# Prints the pid of every process of a running twin; nothing when none runs.
twin_running_pids() {
    [ -f "$TWIN_PIDS" ] || return 0
    local name pid
    while read -r name pid _; do
        if [ -n "$pid" ] && twin_alive "$name" "$pid"; then
            echo "$pid"
        fi
    done <"$TWIN_PIDS"
}

# The pid file's entries of one service's tasks (or all tasks), as lines.
twin_tasks() { # [service]
    [ -f "$TWIN_PIDS" ] || return 0
    awk -v s="${1:-}" '$1 ~ /^(issuance|verification)-[0-9]+$/ && (s == "" || index($1, s "-") == 1)' "$TWIN_PIDS"
}

# Rewrites the pid file under its lock: an awk program gets each line.
twin_edit_pids() { # awk-program [awk args...]
    local program=$1
    shift
    (
        flock 9
        awk "$@" "$program" "$TWIN_PIDS" >"$TWIN_PIDS.new" && mv "$TWIN_PIDS.new" "$TWIN_PIDS"
    ) 9>"$TWIN_LOCK"
}
twin_add_entry() { # name pid port metrics state
    (
        flock 9
        echo "$*" >>"$TWIN_PIDS"
    ) 9>"$TWIN_LOCK"
}
# shellcheck disable=SC2016 # awk programs
twin_set_state() { twin_edit_pids '{ if ($1 == n) $5 = s; print }' -v n="$1" -v s="$2"; }
# shellcheck disable=SC2016
twin_remove_entry() { twin_edit_pids '$1 != n' -v n="$1"; }

# GET a path on 127.0.0.1:PORT and print the status code (needs no curl). A
# refused connection prints nothing and says nothing.
http_status() { # port path
    local status
    status=$(
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
        head -n 1 <&3
    ) 2>/dev/null || return 1
    status=${status#HTTP/1.? }
    echo "${status%% *}"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port from FROM up that nothing listens on and no entry claims.
twin_free_port() { # from
    local port=$1
    while port_busy "$port" || { [ -f "$TWIN_PIDS" ] && awk -v p="$port" '$3 == p || $4 == p { f = 1 } END { exit !f }' "$TWIN_PIDS"; }; do
        port=$((port + 1))
    done
    echo "$port"
}

# The cgroup group of this twin's tasks: one per TWIN_DIR.
twin_cgroup() {
    local abs
    abs=$(cd "$TWIN_DIR" && pwd)
    echo "twin-$(printf '%s' "$abs" | cksum | cut -d' ' -f1)"
}

# Detached processes get their own session so closing the terminal leaves them
# be; in the foreground they share up.sh's, so Ctrl-C reaches them too.
twin_launch() { # log-file command...
    local log=$1
    shift
    if [ -n "${TWIN_DETACH:-}" ]; then
        setsid "$@" >"$log" 2>&1 </dev/null &
    else
        "$@" >"$log" 2>&1 </dev/null &
    fi
}

# Starts one task with the twin's environment, in its own cgroup when a task
# size was asked for, records it as STATE, and waits until its health check
# answers. Returns 1 (with the log shown) when it does not come up.
twin_start_task() { # service name port metrics-port state
    local service=$1 name=$2 port=$3 metrics=$4 state=$5 pid procs=()
    if cg_wanted && [ -n "$KC_CG_VERSION" ]; then
        mapfile -t procs < <(cg_prepare "$(twin_cgroup)" "$name")
    fi
    local run=("target/release/$service")
    if [ ${#procs[@]} -gt 0 ]; then
        run=(scripts/lib/cgroup-exec.sh "${procs[@]}" -- "${run[@]}")
    fi
    # Keys the caller's shell may have exported (check-twin.sh's, for k6) stay out.
    run=(env "${KEYS_UNSET[@]}" "${run[@]}")
    PORT=$port METRICS_PORT=$metrics BIND_ADDR=127.0.0.1 WORKER_ID=$name RUN_MIGRATIONS=false \
        LOG_FORMAT=${LOG_FORMAT:-text} twin_launch "$TWIN_DIR/$name.log" "${run[@]}"
    pid=$!
    twin_add_entry "$name" "$pid" "$port" "$metrics" starting
    for _ in $(seq 1 100); do
        if PORT=$port "target/release/$service" healthcheck 2>/dev/null && { ! keys_auth_on || keys_loaded "$service" "$port"; }; then
            twin_set_state "$name" "$state"
            twin_say "$name ready on 127.0.0.1:$port, metrics on :$metrics (log: $TWIN_DIR/$name.log)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            twin_say "$name exited; its log:"
            cat "$TWIN_DIR/$name.log"
            twin_remove_entry "$name"
            return 1
        fi
        sleep 0.1
    done
    twin_say "$name did not become ready; see $TWIN_DIR/$name.log"
    return 1
}

# SIGTERM, then SIGKILL after GRACE seconds; prints how long it took.
twin_stop_task() { # name pid [grace]
    local grace=${3:-30} start=$SECONDS
    kill -TERM "$2" 2>/dev/null || true
    while twin_alive "$1" "$2"; do
        if [ $((SECONDS - start)) -ge "$grace" ]; then
            twin_say "$1 (pid $2) still running after ${grace} s; killing it"
            kill -KILL "$2" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    while kill -0 "$2" 2>/dev/null && twin_alive "$1" "$2"; do sleep 0.05; done
    echo $((SECONDS - start))
}

# nginx: the binary (Debian keeps it out of a normal user's PATH) and its njs module.
twin_nginx() {
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }
}
twin_njs_module() { # nginx
    local dir
    dir=$("$1" -V 2>&1 | sed -nE 's/.*--modules-path=([^ ]+).*/\1/p')
    for dir in "${dir:-/usr/lib/nginx/modules}" /usr/lib/nginx/modules /usr/share/nginx/modules /etc/nginx/modules; do
        if [ -f "$dir/ngx_http_js_module.so" ]; then
            echo "$dir/ngx_http_js_module.so"
            return 0
        fi
    done
    return 1
}

# The nginx.conf of one of the twin's two nginx processes: everything under PREFIX.
twin_nginx_main_conf() { # prefix [module-to-load]
    cat <<CONF
# Generated by scripts/up.sh; the routing lives in conf.d/ (from deploy/nginx/).
${2:+load_module $2;}
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_buffer_size 1m;
    client_body_temp_path $1/temp/body;
    proxy_temp_path $1/temp/proxy;
    fastcgi_temp_path $1/temp/fastcgi;
    uwsgi_temp_path $1/temp/uwsgi;
    scgi_temp_path $1/temp/scgi;
    include $1/conf.d/*.conf;
}
CONF
}

# Replaces each ${NAME} given as NAME=VALUE in a template, with bash alone (no
# envsubst): nginx's own $variables stay as they are.
# shellcheck disable=SC2016 # the placeholders are literal text
twin_render() { # template NAME=VALUE...
    local t pair
    t=$(<"$1")
    shift
    for pair in "$@"; do
        t=${t//"\${${pair%%=*}}"/"${pair#*=}"}
    done
    printf '%s\n' "$t"
}

# The `server` lines of one service's registered tasks.
twin_upstreams() { # service
    local lines
    lines=$(twin_tasks "$1" | awk '$5 == "registered" { printf "server 127.0.0.1:%d max_fails=0;\n    ", $3 }')
    # An upstream needs a server: with none registered, one nothing listens on
    # (port 1) answers 502 like an ALB target group without healthy targets.
    echo "${lines:-server 127.0.0.1:1 max_fails=0; # no task registered
    }"
}

# Writes the target groups' configuration from the registered tasks.
twin_render_targets() {
    twin_render deploy/nginx/target-groups.conf.template \
        "TG_SOCKET_DIR=$(cat "$TWIN_SOCKETS")" \
        "ISSUANCE_UPSTREAMS=$(twin_upstreams issuance)" \
        "VERIFICATION_UPSTREAMS=$(twin_upstreams verification)" \
        >"$TWIN_DIR/nginx-targets/conf.d/target-groups.conf.new"
    mv "$TWIN_DIR/nginx-targets/conf.d/target-groups.conf.new" "$TWIN_DIR/nginx-targets/conf.d/target-groups.conf"
}

twin_nginx_args() { # prefix-dir
    local p
    p=$(cd "$1" && pwd)
    echo "-p $p -c $p/nginx.conf -e $p/error.log"
}

# Re-renders the target groups and reloads their nginx: new workers route to
# the registered tasks; returns once the old workers have finished their
# requests and exited, so a task deregistered here gets no new request.
twin_reload_targets() {
    local nginx master old args
    nginx=$(twin_nginx)
    # shellcheck disable=SC2207 # four words without spaces
    args=($(twin_nginx_args "$TWIN_DIR/nginx-targets"))
    cp "$TWIN_DIR/nginx-targets/conf.d/target-groups.conf" "$TWIN_DIR/nginx-targets/target-groups.conf.previous"
    twin_render_targets
    if ! "$nginx" -t -q "${args[@]}"; then
        twin_say "the new target groups do not pass nginx -t; keeping the old ones"
        mv "$TWIN_DIR/nginx-targets/target-groups.conf.previous" "$TWIN_DIR/nginx-targets/conf.d/target-groups.conf"
        return 1
    fi
    master=$(awk '$1 == "nginx-targets" { print $2 }' "$TWIN_PIDS")
    old=$(ps -o pid= --ppid "$master" | tr -d ' ')
    kill -HUP "$master"
    local pid waited
    for waited in $(seq 1 300); do
        local left=""
        for pid in $old; do
            if kill -0 "$pid" 2>/dev/null; then left=1; fi
        done
        [ -z "$left" ] && return 0
        sleep 0.1
    done
    twin_say "the target groups' old nginx workers still run after ${waited}00 ms (requests still in flight)"
}

# Prometheus's scrape targets (file_sd_configs): every task, rewritten whenever
# the tasks change, so a rollout's replacements are scraped too. The job label
# is the service, as deploy/grafana/kube-credential.json expects ("Service").
twin_write_prometheus_targets() {
    [ -d "$TWIN_DIR/prometheus" ] || return 0
    twin_tasks | awk '
        BEGIN { printf "[" }
        $4 != "-" {
            service = $1; sub(/-[0-9]+$/, "", service)
            printf "%s\n  {\"targets\": [\"127.0.0.1:%s\"], \"labels\": {\"job\": \"%s\", \"task\": \"%s\"}}", (n++ ? "," : ""), $4, service, $1
        }
        END { print "\n]" }' >"$TWIN_DIR/prometheus/targets.json.new"
    mv "$TWIN_DIR/prometheus/targets.json.new" "$TWIN_DIR/prometheus/targets.json"
}

# Stops every process listed in the pid file (TERM, then KILL after the
# services' shutdown grace), the listener first so no new requests arrive, and
# removes the tasks' cgroups and the target groups' socket directory.
twin_stop_processes() {
    [ -f "$TWIN_PIDS" ] || return 0
    local name pid waited
    while read -r name pid _; do
        if twin_alive "$name" "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            twin_say "stopping $name (pid $pid)"
        fi
    done <"$TWIN_PIDS"
    for waited in $(seq 1 250); do
        [ -z "$(twin_running_pids)" ] && break
        sleep 0.1
    done
    local left
    left=$(twin_running_pids)
    if [ -n "$left" ]; then
        twin_say "still running after ${waited}00 ms, killing: $left"
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $left 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$TWIN_PIDS" "$TWIN_LOCK"
    if cg_wanted || [ -d "$KC_CG_FS/cpu/kube-credential" ] || [ -d "$KC_CG_FS/kube-credential" ]; then
        [ -d "$TWIN_DIR" ] && cg_remove "$(twin_cgroup)"
    fi
    if [ -f "$TWIN_SOCKETS" ]; then
        rm -rf "$(cat "$TWIN_SOCKETS")"
        rm -f "$TWIN_SOCKETS"
    fi
}

# Revokes the clients up.sh made for the twin and removes their keys file, with the
# tasks' database (task.env); quiet, never fails (it runs from up.sh's EXIT trap too).
twin_revoke_keys() {
    [ -f "$TWIN_KEYS" ] || return 0
    (
        # shellcheck disable=SC1090
        [ ! -f "$TWIN_ENV" ] || source "$TWIN_ENV"
        keys_revoke target/release/issuance "$TWIN_KEYS"
    )
}
