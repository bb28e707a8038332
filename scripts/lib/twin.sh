# shellcheck shell=bash disable=SC2034 # the variables are used by up.sh and down.sh
# Shared by up.sh and down.sh: where the local twin keeps its state.

TWIN_DIR=${TWIN_DIR:-target/twin} # another dir lets a second twin run beside (test.sh)
TWIN_PIDS=$TWIN_DIR/pids   # "name pid" per line, load balancer first
TWIN_PG=$TWIN_DIR/postgres # set when up.sh started a private PostgreSQL

twin_say() { printf '[twin] %s\n' "$*"; }

# Whether pid still runs the program named by an entry ("issuance-2" runs
# issuance): after a reboot the number may belong to something else.
twin_alive() { # name pid
    local comm
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    [ "$comm" = "${1%-[0-9]*}" ]
}

# Prints the pid of every process of a running twin; nothing when none runs.
twin_running_pids() {
    [ -f "$TWIN_PIDS" ] || return 0
    local name pid
    while read -r name pid; do
        if [ -n "$pid" ] && twin_alive "$name" "$pid"; then
            echo "$pid"
        fi
    done <"$TWIN_PIDS"
}

# GET a path on 127.0.0.1:PORT and print the status code (needs no curl).
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

# Stops every process listed in the pid file (TERM, then KILL after the
# services' shutdown grace), load balancer first so no new requests arrive.
twin_stop_processes() {
    [ -f "$TWIN_PIDS" ] || return 0
    local name pid waited
    while read -r name pid; do
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
    fi
    rm -f "$TWIN_PIDS"
}
