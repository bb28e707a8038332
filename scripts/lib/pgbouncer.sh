# shellcheck shell=bash
# A PgBouncer of one's own in transaction mode, for running the services behind a
# transaction-mode pooler by hand or in a measurement (DB_POOLER=transaction; see
# docs/DEPLOYMENT.md, "Behind a connection pooler"). Debian's pgbouncer package; its
# system service is never started. The config lives in a temporary directory, the pooler
# listens on 127.0.0.1:PORT with auth_type=trust for user postgres, and its one database,
# kc, is DBNAME on the upstream server. The tests start theirs from Rust
# (testing/src/fakes/pgbouncer.rs).
#
#   source scripts/lib/pgbouncer.sh
#   pgb_start 6432 127.0.0.1 5432 test [SCHEMA]   # then DATABASE_URL=postgres://postgres@127.0.0.1:6432/kc
#   pgb_stop

KC_PGB_DIR=""

pgb_log() { printf '[pgbouncer] %s\n' "$*" >&2; }

pgb_bin() {
    command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }
}

# Starts it in the background; returns once it listens. SCHEMA (optional) is every
# server connection's search_path (a client cannot send it as options through the
# pooler); EXTRA (optional) is appended to the [pgbouncer] section, e.g.
# "ignore_startup_parameters = options".
pgb_start() { # port upstream-host upstream-port dbname [schema] [extra]
    local bin runas=() query=""
    [ -n "${5:-}" ] && query=" connect_query='SET search_path TO $5'"
    bin="$(pgb_bin)" || true
    if [ -z "$bin" ]; then
        pgb_log "pgbouncer is not installed: apt-get install -y pgbouncer"
        return 1
    fi
    KC_PGB_DIR="$(mktemp -d)"
    cat >"$KC_PGB_DIR/pgbouncer.ini" <<EOF
[databases]
kc = host=$2 port=$3 dbname=$4 user=postgres$query

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = trust
auth_file = $KC_PGB_DIR/users.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
logfile = $KC_PGB_DIR/log
pidfile = $KC_PGB_DIR/pid
${6:-}
EOF
    printf '"postgres" ""\n' >"$KC_PGB_DIR/users.txt"
    if [ "$(id -u)" -eq 0 ]; then
        # PgBouncer refuses to run as root.
        chown -R postgres "$KC_PGB_DIR"
        runas=(runuser -u postgres --)
    fi
    "${runas[@]}" "$bin" -d "$KC_PGB_DIR/pgbouncer.ini" || return 1
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            pgb_log "listening on 127.0.0.1:$1 (log: $KC_PGB_DIR/log)"
            return 0
        fi
        sleep 0.05
    done
    pgb_log "did not listen within 5 s after $i tries; see $KC_PGB_DIR/log"
    return 1
}

# Stops the one pgb_start started, and deletes its directory.
pgb_stop() {
    [ -n "$KC_PGB_DIR" ] || return 0
    if [ -f "$KC_PGB_DIR/pid" ]; then
        kill "$(cat "$KC_PGB_DIR/pid")" 2>/dev/null || true
        sleep 0.2
    fi
    rm -rf "$KC_PGB_DIR"
    KC_PGB_DIR=""
}
