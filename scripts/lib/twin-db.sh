# shellcheck shell=bash
# The twin's optional database tier (scripts/up.sh; both off by default):
#
#   TWIN_REPLICA=1         the twin runs on a private primary it starts (initdb into a
#                          temporary directory, a free port) and a streaming replica of it
#                          (pg_basebackup -R), and verification reads from the replica
#                          (DATABASE_READ_URL). Never the shared server: a base backup
#                          copies its whole cluster, and it is not the twin's to configure.
#   TWIN_POOLER=pgbouncer  the tasks reach the primary through a PgBouncer of the twin's own
#                          in transaction mode (scripts/lib/pgbouncer.sh), with
#                          DB_POOLER=transaction; the migrations and the API clients go
#                          through it too.
#
# What it starts is listed in TWIN_DB (one "KIND PATH" line each, stopped in reverse
# order by twin_db_stop, from up.sh's exit and scripts/down.sh). Needs postgres.sh,
# pgbouncer.sh and twin.sh sourced first.

TWIN_DB=$TWIN_DIR/database

# Refuses values other than the documented ones (exit 2, as up.sh does for its others).
twin_db_check_args() {
    case "${TWIN_POOLER:-}" in
        "" | pgbouncer) ;;
        *)
            echo "TWIN_POOLER must be pgbouncer or unset (got '$TWIN_POOLER')" >&2
            exit 2
            ;;
    esac
    case "${TWIN_REPLICA:-}" in
        "" | 0 | 1) ;;
        *)
            echo "TWIN_REPLICA must be 1, 0 or unset (got '$TWIN_REPLICA')" >&2
            exit 2
            ;;
    esac
}

twin_db_replica_wanted() { [ "${TWIN_REPLICA:-0}" = 1 ]; }

# Runs a PostgreSQL tool as the postgres user when we are root (the server refuses root).
twin_db_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Starts a server on DATADIR at PORT (its socket in the data's parent directory) and
# lists it in TWIN_DB.
twin_db_start_server() { # datadir port name
    local dir
    dir=$(dirname "$1")
    twin_db_as_postgres "$(pg_find_bin pg_ctl)" -D "$1" -l "$dir/$3.log" -w -t 60 \
        -o "-p $2 -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null || {
        twin_say "the $3 did not start: see $dir/$3.log"
        return 1
    }
    echo "server $1" >>"$TWIN_DB"
}

# The primary and its replica; exports DATABASE_URL, DATABASE_READ_URL and DB_SSLMODE.
twin_db_start_replica() {
    local dir primary replica
    pg_install || return 1
    dir=$(mktemp -d "${TMPDIR:-/tmp}/kc-twin-db.XXXXXX")
    echo "dir $dir" >>"$TWIN_DB"
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    twin_db_as_postgres "$(pg_find_bin initdb)" -D "$dir/primary" -U postgres --auth=trust --encoding=UTF8 \
        >"$dir/initdb.log" 2>&1 || {
        twin_say "initdb failed: see $dir/initdb.log"
        return 1
    }
    primary=$(pg_free_port) || return 1
    twin_db_start_server "$dir/primary" "$primary" primary || return 1
    # initdb's pg_hba.conf admits replication from 127.0.0.1 with --auth=trust.
    twin_db_as_postgres "$(pg_find_bin pg_basebackup)" -h 127.0.0.1 -p "$primary" -U postgres \
        -D "$dir/replica" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 || {
        twin_say "pg_basebackup failed: see $dir/basebackup.log"
        return 1
    }
    replica=$(pg_free_port) || return 1
    twin_db_start_server "$dir/replica" "$replica" replica || return 1
    export DATABASE_URL="postgres://postgres@127.0.0.1:$primary/postgres"
    export DATABASE_READ_URL="postgres://postgres@127.0.0.1:$replica/postgres"
    export DB_SSLMODE=${DB_SSLMODE:-disable}
    twin_say "private primary on 127.0.0.1:$primary, streaming replica on 127.0.0.1:$replica (DATABASE_READ_URL; in $dir)"
}

# A PgBouncer in front of DATABASE_URL's server, which must be postgres://postgres@HOST[:PORT]/DB
# (PgBouncer's user list has postgres without a password), optionally with the scratch
# schema of pg_schema_url; exports DATABASE_URL (the pooler's) and DB_POOLER=transaction.
twin_db_start_pooler() {
    local re='^postgres(ql)?://postgres@([^:/?@]+)(:([0-9]+))?/([^?]+)(\?(.*))?$' host port db query schema="" listen
    if ! [[ ${DATABASE_URL:-} =~ $re ]]; then
        twin_say "TWIN_POOLER=pgbouncer needs DATABASE_URL of the form postgres://postgres@HOST:PORT/DB (user postgres, no password)"
        return 1
    fi
    host=${BASH_REMATCH[2]} port=${BASH_REMATCH[4]:-5432} db=${BASH_REMATCH[5]} query=${BASH_REMATCH[7]}
    if [[ $query =~ (^|&)options=-csearch_path%3D([A-Za-z0-9_]+) ]]; then
        schema=${BASH_REMATCH[2]}
    fi
    listen=$(pg_free_port) || return 1
    pgb_start "$listen" "$host" "$port" "$db" "$schema" || return 1
    echo "pgbouncer $KC_PGB_DIR" >>"$TWIN_DB"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$listen/kc" DB_POOLER=transaction
    twin_say "PgBouncer (transaction mode) on 127.0.0.1:$listen in front of $host:$port/$db${schema:+ (schema $schema)}; the tasks use it with DB_POOLER=transaction"
}

# What TWIN_REPLICA and TWIN_POOLER ask for; nothing when neither is set.
twin_db_start() {
    if twin_db_replica_wanted; then
        twin_db_start_replica || return 1
    fi
    if [ -n "${TWIN_POOLER:-}" ]; then
        twin_db_start_pooler || return 1
    fi
}

# Stops what twin_db_start started, newest first, and deletes its directories; quiet,
# never fails (it runs from EXIT traps).
twin_db_stop() {
    [ -f "$TWIN_DB" ] || return 0
    local kind path
    while read -r kind path; do
        case "$kind" in
            pgbouncer)
                KC_PGB_DIR=$path
                pgb_stop
                ;;
            server) twin_db_as_postgres "$(pg_find_bin pg_ctl)" -D "$path" -m fast -w stop >/dev/null 2>&1 || true ;;
            dir) rm -rf "$path" ;;
        esac
    done < <(tac "$TWIN_DB")
    rm -f "$TWIN_DB"
}
