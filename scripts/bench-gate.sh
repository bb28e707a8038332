#!/usr/bin/env bash
# The benchmark-regression gate: instruction counts of the CPU paths
# (benches/benches/instructions.rs, gungraun under valgrind) against the
# committed baseline benches/instructions-baseline.json. Prints a table and
# fails when any benchmark needs more than 5 % more instructions.
#
#   scripts/bench-gate.sh            # compare (what scripts/test.sh runs)
#   scripts/bench-gate.sh --update   # write the baseline; commit it on its own
#
# Installs valgrind (apt-get, as root) and gungraun-runner at the exact version
# of the gungraun library in Cargo.lock (cargo install, into target/cargo-tools)
# when missing. BENCH_GATE_TOLERANCE changes the 5 %.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
    "" | --update) ;;
    --help | -h)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $1 (try --help)" >&2
        exit 2
        ;;
esac
say() { printf '[bench-gate] %s\n' "$*" >&2; }

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        say "installing valgrind (apt-get)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
    else
        say "valgrind is missing: sudo apt-get install -y valgrind"
        exit 1
    fi
fi

# The runner must be the library's exact version, or gungraun refuses to run.
version=$(awk '/^name = "gungraun"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
[ -n "$version" ] || {
    say "no gungraun in Cargo.lock"
    exit 1
}
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
need_cargo_tool gungraun-runner "$version"
GUNGRAUN_RUNNER=$(command -v gungraun-runner)
export GUNGRAUN_RUNNER

mkdir -p target/bench-gate
say "running the instruction-count benches under valgrind"
cargo bench --quiet -p kc-benches --features gate --bench instructions -- --output-format=json --nosummary \
    >target/bench-gate/results.jsonl
python3 scripts/checks/bench_gate.py benches/instructions-baseline.json \
    --tolerance "${BENCH_GATE_TOLERANCE:-5}" ${1:+"$1"} <target/bench-gate/results.jsonl
