#!/usr/bin/env bash
# The primary's batched insert rate: issuance's own coalesced statement, ISSUE_MANY
# (read from issuance/src/lib.rs, its parameters replaced by the expressions of
# load/pgbench/issue_many.params), run by pgbench against a private PostgreSQL this
# script starts (initdb into a temporary directory, a free port, default settings:
# fsync and synchronous_commit on) and migrates with the release binary; or against
# SCRATCH_DATABASE_URL, a database you mean to throw away (an RDS instance of the
# class you plan for: the migrations are applied to it and pgbench fills it). Never
# the shared server. Prints, per batch size and client count, statements/s and
# credentials stored per second; docs/DEPLOYMENT.md ("Scaling") uses the figures.
#
#   load/pgbench-issue.sh                      # batch 128; 1 and 4 clients; 10 s each
#   BATCHES="1 128" CLIENTS="4" SECONDS_EACH=5 load/pgbench-issue.sh
#   SCRATCH_DATABASE_URL='postgres://kcadmin:…@scratch.….rds.amazonaws.com/scratch?sslmode=require' load/pgbench-issue.sh
#
# A client is one issuance task's lane (DB_BATCH_LANES=1): N clients are N tasks
# each sending full batches back to back, the most the primary is asked for.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
BATCHES=${BATCHES:-128}
CLIENTS=${CLIENTS:-1 4}
SECONDS_EACH=${SECONDS_EACH:-10}

pg_install
pgbench=$(pg_find_bin pgbench)
[ -n "$pgbench" ] || { pg_log "pgbench not found (it comes with the postgresql package)"; exit 1; }
[ -x target/release/issuance ] || cargo build --release --bin issuance

# The statement, as issuance prepares it, with the arguments in place.
sql=$(sed -n '/^const ISSUE_MANY: &str = "\\$/,/";$/p' issuance/src/lib.rs | sed '1d; s/";$//')
[ -n "$sql" ] || { echo "ISSUE_MANY not found in issuance/src/lib.rs" >&2; exit 1; }
while read -r param expression; do
    [[ $param == \$* ]] || continue
    sql=${sql//"$param"/$expression}
done <load/pgbench/issue_many.params
if [[ $sql == *\$[0-9]* ]]; then
    echo "a parameter of ISSUE_MANY has no expression in load/pgbench/issue_many.params" >&2
    exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kc-pgbench.XXXXXX")
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    as_pg=(runuser -u postgres --)
    chown postgres "$dir"
fi
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
    "${as_pg[@]}" "$(pg_find_bin pg_ctl)" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap finish EXIT
printf '%s;\n' "$sql" >"$dir/issue_many.sql"
chmod 644 "$dir/issue_many.sql"
if [ -n "${SCRATCH_DATABASE_URL:-}" ]; then
    url=$SCRATCH_DATABASE_URL
    DATABASE_URL=$url LOG_LEVEL=warn target/release/issuance migrate >/dev/null
else
    "${as_pg[@]}" "$(pg_find_bin initdb)" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 >"$dir/initdb.log" 2>&1
    port=$(pg_free_port)
    "${as_pg[@]}" "$(pg_find_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
    url="postgres://postgres@127.0.0.1:$port/postgres"
    DATABASE_URL=$url DB_SSLMODE=disable LOG_LEVEL=warn target/release/issuance migrate >/dev/null
fi

printf '%-6s %-8s %14s %18s %12s\n' batch clients statements/s "credentials/s" "latency ms"
for batch in $BATCHES; do
    for clients in $CLIENTS; do
        out=$("${as_pg[@]}" "$pgbench" -n -f "$dir/issue_many.sql" -D "batch=$batch" -c "$clients" \
            -j "$(( clients < 2 ? clients : 2 ))" -T "$SECONDS_EACH" "$url" 2>&1) || {
            echo "$out" >&2
            exit 1
        }
        tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out")
        latency=$(sed -nE 's/^latency average = ([0-9.]+) ms/\1/p' <<<"$out")
        awk -v b="$batch" -v c="$clients" -v t="$tps" -v l="$latency" \
            'BEGIN { printf "%-6s %-8s %14.0f %18.0f %12s\n", b, c, t, t * b, l }'
    done
done
stored=$(psql "$url" -Atc "SELECT count(*) FROM credentials WHERE issued_by = 'pgbench'")
echo "credentials stored by pgbench: $stored"
