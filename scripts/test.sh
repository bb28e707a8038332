#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test against a real
# PostgreSQL (see scripts/lib/postgres.sh for where it comes from).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

ensure_postgres
trap pg_stop_private EXIT
# The tests use TEST_DATABASE_URL when it is set, else the server found above.
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-$DATABASE_URL}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
