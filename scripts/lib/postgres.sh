# shellcheck shell=bash
# Makes sure a PostgreSQL server is reachable and exports DATABASE_URL for it.
#
#   1. DATABASE_URL, when set, is used as it is.
#   2. Else a server on 127.0.0.1:5432 that accepts postgres@…/test (or /postgres).
#   3. Else a private throw-away cluster under target/pg, made with the system's
#      initdb/pg_ctl (installing Debian's postgresql package first when missing and
#      running as root; otherwise printing the command to run). pg_stop_private
#      stops it again.
#
# Never touches a server it did not start.

KC_PG_STARTED=""
KC_PG_DIR=""
KC_PG_RUNAS=()

pg_log() { printf '[postgres] %s\n' "$*" >&2; }

# psql is needed to probe servers; it comes with postgresql-client.
pg_have_psql() { command -v psql >/dev/null 2>&1; }

pg_answers() { # URL
    pg_have_psql && PGCONNECT_TIMEOUT=3 psql "$1" -qAtc 'SELECT 1' >/dev/null 2>&1
}

pg_find_bin() { # initdb | pg_ctl
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
        return
    fi
    # Debian keeps the server binaries out of PATH.
    find /usr/lib/postgresql -path "*/bin/$1" 2>/dev/null | sort -V | tail -n 1
}

pg_install() {
    if [ -n "$(pg_find_bin initdb)" ] && pg_have_psql; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        pg_log "PostgreSQL is not installed. Install it, then run this again:"
        pg_log "    sudo apt-get update && sudo apt-get install -y postgresql"
        return 1
    fi
    pg_log "installing Debian's postgresql package"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

pg_free_port() {
    local port
    for port in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    return 1
}

pg_start_private() {
    pg_install || return 1
    local initdb pg_ctl port root
    initdb=$(pg_find_bin initdb)
    pg_ctl=$(pg_find_bin pg_ctl)
    if [ -z "$initdb" ] || [ -z "$pg_ctl" ]; then
        pg_log "initdb/pg_ctl not found"
        return 1
    fi
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    KC_PG_DIR="$root/target/pg"
    if [ "$(id -u)" -eq 0 ]; then
        # The server refuses to run as root: run it as the postgres user, in a
        # place that user can reach (the checkout may be under a private home).
        KC_PG_RUNAS=(runuser -u postgres --)
        if ! runuser -u postgres -- test -x "$root/target" 2>/dev/null; then
            KC_PG_DIR="${TMPDIR:-/tmp}/kube-credential-pg"
        fi
    fi
    mkdir -p "$KC_PG_DIR"
    [ ${#KC_PG_RUNAS[@]} -eq 0 ] || chown postgres "$KC_PG_DIR"
    if [ ! -f "$KC_PG_DIR/data/PG_VERSION" ]; then
        pg_log "creating a private cluster in $KC_PG_DIR/data"
        "${KC_PG_RUNAS[@]}" "$initdb" -D "$KC_PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 >"$KC_PG_DIR/initdb.log" 2>&1 \
            || { pg_log "initdb failed: see $KC_PG_DIR/initdb.log"; return 1; }
    fi
    port=$(pg_free_port) || { pg_log "no free port in 55432-55532"; return 1; }
    "${KC_PG_RUNAS[@]}" "$pg_ctl" -D "$KC_PG_DIR/data" -l "$KC_PG_DIR/server.log" -w -t 30 \
        -o "-p $port -k $KC_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
        || { pg_log "the private server did not start: see $KC_PG_DIR/server.log"; return 1; }
    KC_PG_STARTED=1
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    export DB_SSLMODE="${DB_SSLMODE:-disable}"
    pg_log "private server on 127.0.0.1:$port (data in $KC_PG_DIR/data)"
}

# Stops the private server if this shell started it.
pg_stop_private() {
    if [ -n "$KC_PG_STARTED" ]; then
        "${KC_PG_RUNAS[@]}" "$(pg_find_bin pg_ctl)" -D "$KC_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        KC_PG_STARTED=""
        pg_log "private server stopped"
    fi
}

# DATABASE_URL with the search path set to SCHEMA: a scratch schema for one
# run (the tasks and psql then see only its tables).
pg_schema_url() { # schema
    local sep='?'
    [[ $DATABASE_URL == *\?* ]] && sep='&'
    printf '%s%soptions=-csearch_path%%3D%s\n' "$DATABASE_URL" "$sep" "$1"
}

# Drops a scratch schema made by pg_schema_url's caller; quiet, never fails
# (it runs from EXIT traps).
pg_drop_schema() { # schema
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null 2>&1 || true
}

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        if pg_have_psql && ! pg_answers "$DATABASE_URL"; then
            pg_log "DATABASE_URL is set but the server does not answer; check it (the URL is not printed: it may hold a password)"
            return 1
        fi
        pg_log "using DATABASE_URL"
        return 0
    fi
    if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
        if ! pg_have_psql; then
            pg_install || return 1
        fi
        local url
        for url in postgres://postgres@127.0.0.1:5432/test postgres://postgres@127.0.0.1:5432/postgres; do
            if pg_answers "$url"; then
                export DATABASE_URL="$url"
                # Loopback needs no TLS (the services' default is prefer).
                export DB_SSLMODE="${DB_SSLMODE:-disable}"
                pg_log "using the server on 127.0.0.1:5432 ($url)"
                return 0
            fi
        done
        pg_log "a server on 127.0.0.1:5432 does not let postgres in without a password; starting a private one"
    fi
    pg_start_private
}
