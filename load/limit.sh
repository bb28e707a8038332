#!/usr/bin/env bash
# PostgreSQL's own limit against one task of each service, in one run on one
# machine and one database:
#
#   1. a scratch schema with the credentials table and 100,000 rows;
#   2. pgbench -M prepared -c 32 -j 2, 15 s each: a primary-key SELECT of one
#      credential, and one INSERT of the issuance statement's shape;
#   3. ONE issuance and ONE verification task (release build), each under wrk
#      at 32 connections for 15 s, with p50/p99 latency and the task's peak RSS;
#   4. with TASK_CPU set (e.g. 0.25: a Fargate task), each task runs in a cgroup
#      with that CPU quota (and TASK_MEMORY_MB, e.g. 512, as its memory limit;
#      scripts/lib/cgroup.sh), its throttling and peak memory are reported, and
#      after wrk an open-loop generator (faults/src/open_loop.rs) sends at
#      constant rates (5 s steps at 10 %, 20 %, ... of the wrk rate) to find the
#      highest rate at which the task's p99 stays within P99_BOUND_MS (25) with
#      every request answered as expected;
#   5. the ratios verify_rps / pgbench_select_tps and issue_rps / pgbench_insert_tps,
#      as a table and as JSON under target/limit/ (load/limit_report.py);
#   6. with AUTH_COMPARE=1, what checking API keys costs (issue 16: at least 0.97x
#      each): per service one task with keys (AUTH_MODE=required, wrk sending
#      the key) and one without (AUTH_MODE=off, no key), same size, same schema;
#      wrk against each in turn, COMPARE_ROUNDS times (the order swapped every
#      round), COMPARE_SECONDS each; the medians and their ratio on/off
#      (load/ab_report.py);
#   7. with BULK_COMPARE=1, what bulk requests gain (issue 18: at least 3x
#      each): per service one task, wrk against it in turn with single requests
#      and with bulk requests of BULK_SIZE (100) items (load/wrk/*_bulk.lua),
#      COMPARE_ROUNDS times, COMPARE_SECONDS each; the median credentials/s of
#      each (for bulk, items answered 201 or 200) and their ratio.
#
# The tasks check API keys, as in production (AUTH_MODE=required, the
# default; AUTH_MODE=off measures without): an issuer and a verifier are made
# in the scratch schema with a rate limit no run reaches, and wrk and the
# open-loop generator send their keys. The tasks log as the script always has
# (JSON, LOG_LEVEL=warn: no access log).
#
# Afterwards every 201 is checked against the table. Everything it starts is
# stopped and the scratch schema dropped; no other table is touched.
#
# Environment: DATABASE_URL (see scripts/lib/postgres.sh), CONNECTIONS (32),
# SECONDS_EACH (15), ROWS (100000), WRK_THREADS (2), LIMIT_PORT_BASE (3900),
# TARGET (a target triple, e.g. x86_64-unknown-linux-musl to measure the binary
# the Dockerfile builds; default: the host's), TASK_CPU, TASK_MEMORY_MB,
# P99_BOUND_MS (25), AUTH_MODE (required), AUTH_COMPARE (unset; 1: step 6),
# BULK_COMPARE (unset; 1: step 7), BULK_SIZE (100), COMPARE_ROUNDS (5),
# COMPARE_SECONDS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=load/lib.sh
source load/lib.sh
# shellcheck source=scripts/lib/cgroup.sh
source scripts/lib/cgroup.sh

CONNECTIONS=${CONNECTIONS:-32}
SECONDS_EACH=${SECONDS_EACH:-15}
ROWS=${ROWS:-100000}
WRK_THREADS=${WRK_THREADS:-2}
PORT_BASE=${LIMIT_PORT_BASE:-3900}
P99_BOUND_MS=${P99_BOUND_MS:-25}
AUTH_MODE=${AUTH_MODE:-required}
AUTH_COMPARE=${AUTH_COMPARE:-}
COMPARE_ROUNDS=${COMPARE_ROUNDS:-5}
COMPARE_SECONDS=${COMPARE_SECONDS:-8}
BULK_COMPARE=${BULK_COMPARE:-}
export BULK_SIZE=${BULK_SIZE:-100}
OUT=target/limit
say() { printf '[limit] %s\n' "$*" >&2; }
cg_init || exit 2
CGROUP="limit-$$"

for tool in pgbench:postgresql-contrib wrk:wrk; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ]; then
            say "${tool%%:*} is missing: sudo apt-get install -y ${tool#*:}"
            exit 1
        fi
        say "installing ${tool#*:}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool#*:}" >/dev/null
    fi
done

mkdir -p "$OUT"
# Other work on the machine skews every figure; the report shows how busy it was.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$OUT/facts.txt"
fact() { echo "$*" >>"$OUT/facts.txt"; }
say "building release binaries${TARGET:+ for $TARGET}"
cargo build --release --quiet ${TARGET:+--target "$TARGET"} --bin issuance --bin verification --bin open-loop
BIN="target/${TARGET:+$TARGET/}release"
ensure_postgres

SCHEMA="kc_limit_$$"
URL=$(pg_schema_url "$SCHEMA")
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT
    load_cleanup
    cg_remove "$CGROUP"
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
# Clients whose own limit no run reaches (CLIENT_RATE_LIMIT would give 429s).
if keys_auth_on || [ -n "$AUTH_COMPARE" ]; then
    say "API clients: an issuer and a verifier (1000000 requests/s per task each)"
    DATABASE_URL="$URL" DB_SSLMODE="${DB_SSLMODE:-disable}" keys_create "$BIN/issuance" limit 1000000
fi
# What wrk and open-loop send: the keys only to tasks that check them.
if keys_auth_on; then export ISSUER_KEY VERIFIER_KEY; fi

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
    cat "$OUT/pgbench-$name-log".* | python3 load/latency.py "$tps"
    rm -f "$OUT/pgbench-$name-log".*
}
say "pgbench SELECT by primary key ($CONNECTIONS clients, ${SECONDS_EACH}s)"
fact pgbench_select "$(pgbench_run select.sql)"
say "pgbench INSERT ($CONNECTIONS clients, ${SECONDS_EACH}s)"
fact pgbench_insert "$(pgbench_run insert.sql)"

# Starts one task (named NAME, default the service: its worker id limit-NAME, its
# log and its cgroup) with AUTH_MODE (default the script's) and waits until it
# answers, with the clients loaded.
start_task() { # service port [auth-mode [name]]
    local auth=${3:-$AUTH_MODE} name=${4:-$1}
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
        say "port $2 is in use (set LIMIT_PORT_BASE)"
        exit 1
    fi
    local run=("$BIN/$1") procs=()
    if [ -n "$KC_CG_VERSION" ]; then
        mapfile -t procs < <(cg_prepare "$CGROUP" "$name")
        run=(scripts/lib/cgroup-exec.sh "${procs[@]}" -- "${run[@]}")
    fi
    # METRICS_PORT=0: an ephemeral port, so two tasks never clash on 9464.
    # TRUSTED_PROXY_HOPS=0: wrk is the TCP peer, no proxy in between.
    DATABASE_URL="$URL" PORT=$2 METRICS_PORT=0 BIND_ADDR=127.0.0.1 WORKER_ID="limit-$name" RUN_MIGRATIONS=false \
        DB_SSLMODE="${DB_SSLMODE:-disable}" LOG_LEVEL=warn AUTH_MODE=$auth TRUSTED_PROXY_HOPS=0 \
        env "${KEYS_UNSET[@]}" "${run[@]}" >"$OUT/$name.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 100); do
        # With keys, the task must also have loaded the clients (503 until then).
        if PORT=$2 "$BIN/$1" healthcheck 2>/dev/null && { [ "$auth" = off ] || keys_loaded "$1" "$2"; }; then
            return 0
        fi
        sleep 0.05
    done
    say "$name did not start; see $OUT/$name.log"
    exit 1
}


# Runs wrk against one task and writes "rps p50_ms p99_ms peak_rss_mb non2xx errors
# requests task_cpu_pct machine_busy_pct" to $OUT/result-SERVICE. Runs in this
# shell, so PIDS keeps the task.
# Runs wrk (its output to FILE) and prints its WRK_JSON line (load/wrk/report.lua).
# The lua scripts send ISSUER_KEY or VERIFIER_KEY when they are in the environment.
run_wrk() { # port lua seconds file
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${3}s" --timeout 5s -s "load/wrk/$2" \
        "http://127.0.0.1:$1" >"$4" 2>&1
    sed -n 's/^WRK_JSON //p' "$4"
}

measure() { # service port lua
    local pid json
    start_task "$1" "$2"
    pid=${PIDS[-1]}
    local task_before cpu_before
    task_before=$(task_ticks "$pid")
    cpu_before=$(cpu_ticks)
    json=$(run_wrk "$2" "$3" "$SECONDS_EACH" "$OUT/wrk-$1.txt")
    # Where the two cores went: this task's share, and the whole machine's.
    local task_cpu machine_cpu
    read -r task_cpu machine_cpu < <(cpu_shares "$task_before" "$(task_ticks "$pid")" "$cpu_before" "$(cpu_ticks)")
    local hwm
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    python3 load/limit_report.py wrk "$json" "$hwm" "$task_cpu" "$machine_cpu" >"$OUT/result-$1"
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

open_loop_kind() { if [ "$1" = verification ]; then echo verify; else echo issue; fi; }

# With TASK_CPU: the highest constant arrival rate at which the task's p99 stays
# within P99_BOUND_MS with every request answered as expected. Steps of 5 s
# (after a 2 s warm-up at the same rate) at 10 %, 20 %, ... 90 % of the wrk
# rate, up to two failures in a row once 50 % (the issue's "half of
# saturation") has run; this machine is noisy, so a scan shows more than a
# bisection would. The generator is the fault suite's lean client
# (faults/src/open_loop.rs): k6 took about a core at 5,000 requests/s here and
# measured itself. Records "percent:rate:p99:ok:throttled/periods" per step.
constant_search() { # service port saturation_rps
    # Tasks that check keys answer 401 or 429 to a generator that sends none.
    local probe
    read -r _ _ _ _ _ probe < <("$BIN/open-loop" "127.0.0.1:$2" "$(open_loop_kind "$1")" 200 1 0 "$OUT/ids.txt")
    if [ "$probe" != 0 ]; then
        say "  skipped: $probe of 200 requests of the open-loop generator got another answer than $([ "$1" = verification ] && echo 200 || echo 201)$(keys_auth_on && echo "; it must send the keys (ISSUER_KEY, VERIFIER_KEY in its environment): faults/src/open_loop.rs")"
        return 0
    fi
    local pct rate steps=() due answered p99 unexpected ok misses=0 p0 t0 p1 t1
    for pct in 10 20 30 40 50 60 70 80 90; do
        rate=$(($3 * pct / 100))
        read -r p0 t0 _ < <(cg_cpu_stat "$CGROUP" "$1")
        read -r due answered _ p99 _ unexpected < <("$BIN/open-loop" "127.0.0.1:$2" "$(open_loop_kind "$1")" "$rate" 5 2 "$OUT/ids.txt")
        # Whether the quota was what held the task back: periods it was throttled in.
        read -r p1 t1 _ < <(cg_cpu_stat "$CGROUP" "$1")
        if awk -v p="$p99" -v b="$P99_BOUND_MS" -v d="$due" -v a="$answered" -v u="$unexpected" \
            'BEGIN { exit !(p <= b && a >= d && u == 0) }'; then
            ok=1
            misses=0
        else
            ok=0
            misses=$((misses + 1))
        fi
        say "  $1 at $rate/s ($pct %): p99 $p99 ms, $unexpected of $answered not $([ "$1" = verification ] && echo 200 || echo 201), throttled in $((t1 - t0)) of $((p1 - p0)) periods$([ "$ok" = 1 ] || echo " (over the bound)")"
        steps+=("$pct:$rate:$p99:$ok:$((t1 - t0))/$((p1 - p0))")
        if [ "$misses" -ge 2 ] && [ "$pct" -ge 50 ]; then
            break
        fi
    done
    fact "$([ "$1" = verification ] && echo verify || echo issue)_constant" "${steps[*]}"
}

say "wrk on one verification task ($CONNECTIONS connections, ${SECONDS_EACH}s)"
IDS_FILE="$OUT/ids.txt" measure verification $((PORT_BASE + 2)) verify.lua
fact verify_wrk "$(cat "$OUT/result-verification")"
if [ -n "${TASK_CPU:-}" ]; then
    say "constant-rate search on the verification task (p99 ≤ $P99_BOUND_MS ms, steps of 5 s)"
    constant_search verification $((PORT_BASE + 2)) "$(cut -d' ' -f1 "$OUT/result-verification")"
fi
fact verify_cgroup "$(cg_report "$CGROUP" verification)"

say "wrk on one issuance task ($CONNECTIONS connections, ${SECONDS_EACH}s)"
checkpoints() { psql "$DATABASE_URL" -Atc "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
CHECKPOINTS=$(checkpoints)
measure issuance $((PORT_BASE + 1)) issue.lua
fact checkpoints $(($(checkpoints) - CHECKPOINTS))
fact issue_wrk "$(cat "$OUT/result-issuance")"
read -r _ _ _ _ ISSUE_NON2XX _ ISSUE_REQUESTS _ <"$OUT/result-issuance"

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
fact created "$CREATED"
fact stored "$STORED"
fact check "$CHECK"
if [ -n "${TASK_CPU:-}" ]; then
    say "constant-rate search on the issuance task (p99 ≤ $P99_BOUND_MS ms, steps of 5 s)"
    constant_search issuance $((PORT_BASE + 1)) "$(cut -d' ' -f1 "$OUT/result-issuance")"
fi
fact issue_cgroup "$(cg_report "$CGROUP" issuance)"

# AUTH_COMPARE=1: one task with keys and one without, wrk against each in turn.
# Writes "side round cpu_ticks WRK_JSON" lines (a: off, b: keys) for load/ab_report.py,
# whose figures (one JSON line) become a fact.
auth_compare() { # service port lua
    local on off round side pid port before json results="$OUT/auth-compare-$1.txt" kind
    kind=$(open_loop_kind "$1")
    start_task "$1" "$2" required "$1-auth-on"
    on=${PIDS[-1]}
    start_task "$1" $(($2 + 1)) off "$1-auth-off"
    off=${PIDS[-1]}
    : >"$results"
    for round in $(seq 1 "$COMPARE_ROUNDS"); do
        # a b, then b a: drift during a round falls on both sides alike.
        for side in $([ $((round % 2)) = 1 ] && echo a b || echo b a); do
            if [ "$side" = a ]; then pid=$off port=$(($2 + 1)); else pid=$on port=$2; fi
            before=$(task_ticks "$pid")
            # The keys go only to the task that checks them (in this subshell's environment).
            json=$(
                if [ "$side" = a ]; then unset ISSUER_KEY VERIFIER_KEY; else export ISSUER_KEY VERIFIER_KEY; fi
                run_wrk "$port" "$3" "$COMPARE_SECONDS" "$OUT/wrk-compare.txt"
            )
            echo "$side $round $(($(task_ticks "$pid") - before)) $json" >>"$results"
            say "  $1 round $round: AUTH_MODE=$([ "$side" = a ] && echo off || echo required) $(python3 load/limit_report.py rps "$json")/s"
        done
    done
    kill -TERM "$on" "$off" 2>/dev/null || true
    python3 load/ab_report.py "$1" "AUTH_MODE=off, no key" "AUTH_MODE=required, $([ "$1" = issuance ] && echo "an issuer's" || echo "a verifier's") key" \
        "$(getconf CLK_TCK)" "$OUT/auth-compare-$1.json" <"$results" >&2
    fact "${kind}_auth_compare" "$(cat "$OUT/auth-compare-$1.json")"
    fact "${kind}_auth_compare_cgroup" "on: $(cg_report "$CGROUP" "$1-auth-on") | off: $(cg_report "$CGROUP" "$1-auth-off")"
}
if [ -n "$AUTH_COMPARE" ]; then
    say "authentication on vs off: verification ($COMPARE_ROUNDS rounds of ${COMPARE_SECONDS}s each side)"
    IDS_FILE="$OUT/ids.txt" auth_compare verification $((PORT_BASE + 3)) verify.lua
    say "authentication on vs off: issuance ($COMPARE_ROUNDS rounds of ${COMPARE_SECONDS}s each side)"
    auth_compare issuance $((PORT_BASE + 5)) issue.lua
fi

# BULK_COMPARE=1: one task, wrk with single requests (a) and bulk requests (b) in turn.
bulk_compare() { # service port single-lua bulk-lua
    local pid round side lua before json results="$OUT/bulk-compare-$1.txt" kind
    kind=$(open_loop_kind "$1")
    start_task "$1" "$2" "$AUTH_MODE" "$1-bulk"
    pid=${PIDS[-1]}
    : >"$results"
    for round in $(seq 1 "$COMPARE_ROUNDS"); do
        for side in $([ $((round % 2)) = 1 ] && echo a b || echo b a); do
            if [ "$side" = a ]; then lua=$3; else lua=$4; fi
            before=$(task_ticks "$pid")
            json=$(run_wrk "$2" "$lua" "$COMPARE_SECONDS" "$OUT/wrk-compare.txt")
            echo "$side $round $(($(task_ticks "$pid") - before)) $json" >>"$results"
            say "  $1 round $round: $([ "$side" = a ] && echo single || echo "bulk of $BULK_SIZE") $(python3 load/limit_report.py rps "$json") credentials/s"
        done
    done
    kill -TERM "$pid" 2>/dev/null || true
    python3 load/ab_report.py "$1" "single requests" "bulk requests of $BULK_SIZE" \
        "$(getconf CLK_TCK)" "$OUT/bulk-compare-$1.json" <"$results" >&2
    fact "${kind}_bulk_compare" "$(cat "$OUT/bulk-compare-$1.json")"
    fact "${kind}_bulk_compare_cgroup" "$(cg_report "$CGROUP" "$1-bulk")"
}
if [ -n "$BULK_COMPARE" ]; then
    say "single vs bulk requests of $BULK_SIZE: verification ($COMPARE_ROUNDS rounds of ${COMPARE_SECONDS}s each side)"
    IDS_FILE="$OUT/ids.txt" bulk_compare verification $((PORT_BASE + 7)) verify.lua verify_bulk.lua
    say "single vs bulk requests of $BULK_SIZE: issuance ($COMPARE_ROUNDS rounds of ${COMPARE_SECONDS}s each side)"
    bulk_compare issuance $((PORT_BASE + 8)) issue.lua issue_bulk.lua
fi

fact auth_mode "$AUTH_MODE"
fact target "${TARGET:-host}"
fact connections "$CONNECTIONS"
fact seconds "$SECONDS_EACH"
fact rows "$ROWS"
fact task_cpu "${TASK_CPU:-}"
fact task_memory_mb "${TASK_MEMORY_MB:-}"
fact p99_bound_ms "$P99_BOUND_MS"
fact load_before "$LOAD_BEFORE"
python3 load/limit_report.py report "$OUT"
[ "$CHECK" = ok ]
