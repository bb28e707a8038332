#!/usr/bin/env bash
# The project's test command: formatting, lints, every test against a real
# PostgreSQL (see scripts/lib/postgres.sh for where it comes from), schemathesis
# against both services (scripts/schemathesis.sh), the fault suite (faults/, on
# private servers of its own), then the local twin (3+3
# tasks behind nginx) under k6: distribution, a rollout under load, the
# balancer's ALB fidelity (scripts/check-twin.sh); and once more (2+2 tasks)
# behind PgBouncer in transaction mode with a streaming replica for
# verification: the contract and two short k6 runs (scripts/check-twin-db.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

ensure_postgres
# The TLS tests start private servers of their own: they need initdb.
pg_install
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
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

echo "== fuzzing: issuance_body and verification_body, 60 s each side by side, zero crashes (scripts/fuzz.sh)"
bash scripts/fuzz.sh

echo "== benchmark-regression gate: instruction counts against benches/instructions-baseline.json"
bash scripts/bench-gate.sh

echo "== schemathesis: both release binaries fuzzed from the OpenAPI document they serve, zero findings (scripts/schemathesis.sh)"
bash scripts/schemathesis.sh

echo "== fault suite: the release binaries while a private PostgreSQL is stopped, frozen, overloaded or fed poison"
cargo build --release --bin issuance --bin verification
cargo run --release --quiet -p kc-faults

echo "== shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -x scripts/*.sh scripts/lib/*.sh load/*.sh .ci/run
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

echo "== local twin: 3 issuance + 3 verification tasks behind nginx under k6 (scripts/check-twin.sh)"
# Beside any twin the developer has running: its own directory, ports and schema.
TWIN_DIR=target/twin-test LB_PORT=18080 ISSUANCE_PORT_BASE=18000 VERIFICATION_PORT_BASE=18100 \
    METRICS_PORT_BASE=18400 bash scripts/check-twin.sh
echo "== local twin with PgBouncer (transaction mode) and a streaming replica: the contract and short k6 runs (scripts/check-twin-db.sh)"
TWIN_DIR=target/twin-db LB_PORT=18280 ISSUANCE_PORT_BASE=18200 VERIFICATION_PORT_BASE=18300 \
    METRICS_PORT_BASE=18500 bash scripts/check-twin-db.sh
echo "== all checks passed"
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/cargo-test.log
