#!/usr/bin/env bash
# PostgreSQL's own limit against one task of each service, in one run on one
# machine and one database:
#
#   1. a scratch schema with the credentials table and 100,000 rows;
#   2. pgbench -M prepared -c 32 -j 2, 15 s each: a primary-key SELECT of one
#      credential, and one INSERT of the issuance statement's shape;
#   3. ONE issuance and ONE verification task (release build), each under wrk
#      at 32 connections for 15 s, with p50/p99 latency and the task's peak RSS;
#   4. the ratios verify_rps / pgbench_select_tps and issue_rps / pgbench_insert_tps,
#      as a table and as JSON under target/limit/.
#
# Afterwards every 201 is checked against the table. Everything it starts is
# stopped and the scratch schema dropped; no other table is touched.
#
# Environment: DATABASE_URL (see scripts/lib/postgres.sh), CONNECTIONS (32),
# SECONDS_EACH (15), ROWS (100000), WRK_THREADS (2), LIMIT_PORT_BASE (3900),
# TARGET (a target triple, e.g. x86_64-unknown-linux-musl to measure the binary
# the Dockerfile builds; default: the host's).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

CONNECTIONS=${CONNECTIONS:-32}
SECONDS_EACH=${SECONDS_EACH:-15}
ROWS=${ROWS:-100000}
WRK_THREADS=${WRK_THREADS:-2}
PORT_BASE=${LIMIT_PORT_BASE:-3900}
OUT=target/limit
say() { printf '[limit] %s\n' "$*" >&2; }

for tool in pgbench wrk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then
            say "installing $tool"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$([ "$tool" = pgbench ] && echo postgresql-contrib || echo wrk)" >/dev/null
        else
            say "$tool is missing: sudo apt-get install -y $([ "$tool" = pgbench ] && echo postgresql-contrib || echo wrk)"
            exit 1
        fi
    fi
done

mkdir -p "$OUT"
say "building release binaries${TARGET:+ for $TARGET}"
cargo build --release --quiet ${TARGET:+--target "$TARGET"} --bin issuance --bin verification
BIN="target/${TARGET:+$TARGET/}release"
ensure_postgres

SCHEMA="kc_limit_$$"
sep='?'
[[ $DATABASE_URL == *\?* ]] && sep='&'
URL="$DATABASE_URL${sep}options=-csearch_path%3D$SCHEMA"
PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT
    if [ ${#PIDS[@]} -gt 0 ]; then
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    pg_stop_private
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "scratch schema $SCHEMA with $ROWS credentials"
psql "$DATABASE_URL" -qc "CREATE SCHEMA $SCHEMA"
DATABASE_URL="$URL" "$BIN/issuance" migrate >/dev/null
# Row n has id md5(n)::uuid, so pgbench can name an existing credential.
psql "$URL" -q <<SQL
INSERT INTO credentials (id, name, email, credential_type, metadata, issued_by)
SELECT md5(n::text)::uuid, 'Person ' || n, 'p' || n || '@example.com', 'Seed',
       jsonb_build_object('n', n, 'organization', 'Tech Corp'), 'seed'
  FROM generate_series(1, $ROWS) AS n;
ANALYZE credentials;
SQL
psql "$URL" -Atc "SELECT id FROM credentials" >"$OUT/ids.txt"

cat >"$OUT/select.sql" <<SQL
\\set n random(1, $ROWS)
SELECT name, email, credential_type, metadata, issued_by, issued_at FROM credentials WHERE id = md5(:n::text)::uuid;
SQL
cat >"$OUT/insert.sql" <<'SQL'
\set r random(1, 1000000000000)
INSERT INTO credentials (id, name, email, credential_type, metadata, issued_by)
VALUES (gen_random_uuid(), 'pgbench ' || :client_id || '-' || :r, 'pgbench' || :r || '@example.com', 'limit', '{"run":"pgbench"}', 'pgbench')
ON CONFLICT ON CONSTRAINT unique_credential DO NOTHING
RETURNING id, metadata, issued_by, issued_at;
SQL

# Prints "tps p50_ms p99_ms" of one pgbench run (latencies from its per-transaction log).
pgbench_run() { # script
    local name=${1%.sql}
    rm -f "$OUT/pgbench-$name-log".*
    PGOPTIONS="-c search_path=$SCHEMA" pgbench "$DATABASE_URL" -n -M prepared -c "$CONNECTIONS" -j 2 \
        -T "$SECONDS_EACH" -f "$OUT/$1" -l --log-prefix="$OUT/pgbench-$name-log" >"$OUT/pgbench-$name.txt" 2>&1
    local tps
    tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$OUT/pgbench-$name.txt")
    cat "$OUT/pgbench-$name-log".* | python3 -c '
import sys
lat = sorted(int(line.split()[2]) for line in sys.stdin)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(sys.argv[1], f"{pick(0.50):.2f}", f"{pick(0.99):.2f}")' "$tps"
    rm -f "$OUT/pgbench-$name-log".*
}
say "pgbench SELECT by primary key ($CONNECTIONS clients, ${SECONDS_EACH}s)"
read -r SELECT_TPS SELECT_P50 SELECT_P99 < <(pgbench_run select.sql)
say "pgbench INSERT ($CONNECTIONS clients, ${SECONDS_EACH}s)"
read -r INSERT_TPS INSERT_P50 INSERT_P99 < <(pgbench_run insert.sql)

start_task() { # service port
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
        say "port $2 is in use (set LIMIT_PORT_BASE)"
        exit 1
    fi
    DATABASE_URL="$URL" PORT=$2 BIND_ADDR=127.0.0.1 WORKER_ID="limit-$1" RUN_MIGRATIONS=false \
        DB_SSLMODE="${DB_SSLMODE:-disable}" LOG_LEVEL=warn "$BIN/$1" >"$OUT/$1.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 100); do
        PORT=$2 "$BIN/$1" healthcheck 2>/dev/null && return 0
        sleep 0.05
    done
    say "$1 did not start; see $OUT/$1.log"
    exit 1
}

# Runs wrk against one task and writes "rps p50_ms p99_ms peak_rss_mb non2xx errors
# requests" to $OUT/result-SERVICE. Runs in this shell, so PIDS keeps the task.
measure() { # service port lua
    local pid json
    start_task "$1" "$2"
    pid=${PIDS[-1]}
    local task_before cpu_before
    task_before=$(task_ticks "$pid")
    cpu_before=$(cpu_ticks)
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${SECONDS_EACH}s" --timeout 5s -s "load/wrk/$3" \
        "http://127.0.0.1:$2" >"$OUT/wrk-$1.txt" 2>&1
    json=$(sed -n 's/^WRK_JSON //p' "$OUT/wrk-$1.txt")
    # Where the two cores went: this task's share, and the whole machine's.
    local task_cpu machine_cpu
    read -r task_cpu machine_cpu < <(cpu_shares "$task_before" "$(task_ticks "$pid")" "$cpu_before" "$(cpu_ticks)")
    local hwm
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    python3 - "$json" "$hwm" "$task_cpu" "$machine_cpu" >"$OUT/result-$1" <<'PY'
import json, sys
w = json.loads(sys.argv[1])
rps = w["requests"] / (w["duration_us"] / 1e6)
print(f'{rps:.0f} {w["p50_us"]/1000:.2f} {w["p99_us"]/1000:.2f} {int(sys.argv[2])/1024:.1f} {w["non2xx"]} {w["errors"]} {w["requests"]} {sys.argv[3]} {sys.argv[4]}')
PY
}

# Clock ticks a process has run (user + system), and the machine's busy and total ticks.
task_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
cpu_shares() { # task_before task_after "busy total" before, after
    local b1 t1 b2 t2
    read -r b1 t1 <<<"$3"
    read -r b2 t2 <<<"$4"
    # Percent of the whole machine (all cores together).
    awk -v tb="$1" -v ta="$2" -v b1="$b1" -v t1="$t1" -v b2="$b2" -v t2="$t2" \
        'BEGIN { printf "%.0f %.0f\n", 100 * (ta - tb) / (t2 - t1), 100 * (b2 - b1) / (t2 - t1) }'
}

say "wrk on one verification task ($CONNECTIONS connections, ${SECONDS_EACH}s)"
IDS_FILE="$OUT/ids.txt" measure verification $((PORT_BASE + 2)) verify.lua
read -r VERIFY_RPS VERIFY_P50 VERIFY_P99 VERIFY_RSS VERIFY_NON2XX VERIFY_ERRORS _ VERIFY_CPU VERIFY_BUSY <"$OUT/result-verification"
say "wrk on one issuance task ($CONNECTIONS connections, ${SECONDS_EACH}s)"
checkpoints() { psql "$DATABASE_URL" -Atc "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
CHECKPOINTS=$(checkpoints)
measure issuance $((PORT_BASE + 1)) issue.lua
CHECKPOINTS=$(($(checkpoints) - CHECKPOINTS))
read -r ISSUE_RPS ISSUE_P50 ISSUE_P99 ISSUE_RSS ISSUE_NON2XX ISSUE_ERRORS ISSUE_REQUESTS ISSUE_CPU ISSUE_BUSY <"$OUT/result-issuance"

# Every 201 must be a row: the task answered ISSUE_REQUESTS - non2xx times with 201;
# requests still in flight when wrk stopped may add up to CONNECTIONS rows more.
sleep 0.5
STORED=$(psql "$URL" -Atc "SELECT count(*) FROM credentials WHERE issued_by = 'limit-issuance'")
CREATED=$((ISSUE_REQUESTS - ISSUE_NON2XX))
if [ "$STORED" -lt "$CREATED" ] || [ "$STORED" -gt $((CREATED + CONNECTIONS)) ]; then
    say "CORRECTNESS: $CREATED answers 201 but $STORED rows stored"
    CHECK=failed
else
    CHECK=ok
fi

python3 - "$OUT" <<PY
import json, os, sys, datetime
r = dict(
    date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    cores=os.cpu_count(), target="${TARGET:-host}", connections=$CONNECTIONS, seconds=$SECONDS_EACH, rows=$ROWS,
    pgbench_select_tps=float("$SELECT_TPS"), pgbench_insert_tps=float("$INSERT_TPS"),
    pgbench_select_p50_ms=float("$SELECT_P50"), pgbench_select_p99_ms=float("$SELECT_P99"),
    pgbench_insert_p50_ms=float("$INSERT_P50"), pgbench_insert_p99_ms=float("$INSERT_P99"),
    checkpoints_during_issuance=int("$CHECKPOINTS"),
    verify=dict(rps=float("$VERIFY_RPS"), p50_ms=float("$VERIFY_P50"), p99_ms=float("$VERIFY_P99"),
                peak_rss_mb=float("$VERIFY_RSS"), non2xx=int("$VERIFY_NON2XX"), errors=int("$VERIFY_ERRORS"),
                task_cpu_pct=int("$VERIFY_CPU"), machine_busy_pct=int("$VERIFY_BUSY")),
    issue=dict(rps=float("$ISSUE_RPS"), p50_ms=float("$ISSUE_P50"), p99_ms=float("$ISSUE_P99"),
               peak_rss_mb=float("$ISSUE_RSS"), non2xx=int("$ISSUE_NON2XX"), errors=int("$ISSUE_ERRORS"),
               task_cpu_pct=int("$ISSUE_CPU"), machine_busy_pct=int("$ISSUE_BUSY"),
               answered_201=$CREATED, rows_stored=$STORED, every_201_stored="$CHECK"),
)
r["verify_ratio"] = r["verify"]["rps"] / r["pgbench_select_tps"]
r["issue_ratio"] = r["issue"]["rps"] / r["pgbench_insert_tps"]
stamp = r["date"].replace(":", "").replace("-", "")
for name in (f"limit-{stamp}.json", "limit-latest.json"):
    with open(os.path.join(sys.argv[1], name), "w") as f:
        json.dump(r, f, indent=2)
v, i = r["verify"], r["issue"]
print(f"""
load/limit.sh — {r['date']}, {r['cores']} cores, {r['connections']} connections, {r['seconds']} s each

| what | per second | p50 ms | p99 ms | peak RSS MB | errors | task CPU | machine busy |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| pgbench SELECT by id | {r['pgbench_select_tps']:.0f} | {r['pgbench_select_p50_ms']:.2f} | {r['pgbench_select_p99_ms']:.2f} | | | | |
| pgbench INSERT | {r['pgbench_insert_tps']:.0f} | {r['pgbench_insert_p50_ms']:.2f} | {r['pgbench_insert_p99_ms']:.2f} | | | | |
| verification task (wrk) | {v['rps']:.0f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['peak_rss_mb']:.1f} | {v['non2xx'] + v['errors']} | {v['task_cpu_pct']} % | {v['machine_busy_pct']} % |
| issuance task (wrk) | {i['rps']:.0f} | {i['p50_ms']:.2f} | {i['p99_ms']:.2f} | {i['peak_rss_mb']:.1f} | {i['non2xx'] + i['errors']} | {i['task_cpu_pct']} % | {i['machine_busy_pct']} % |

(CPU columns: share of the whole {r['cores']}-core machine during the wrk run.
Checkpoints while issuance ran: {r['checkpoints_during_issuance']}.)

verify_rps / pgbench_select_tps = {r['verify_ratio']:.2f}
issue_rps / pgbench_insert_tps  = {r['issue_ratio']:.2f}
every 201 stored: {i['every_201_stored']} ({i['answered_201']} answered 201, {i['rows_stored']} rows)
JSON: {sys.argv[1]}/limit-latest.json""")
PY
[ "$CHECK" = ok ]
