#!/usr/bin/env bash
# Coverage-guided fuzzing of the request body parsers and their validation
# (fuzz/: cargo-fuzz, libFuzzer and AddressSanitizer on the stable toolchain with
# RUSTC_BOOTSTRAP=1; see fuzz/README.md). Both targets run side by side, one per
# core, for FUZZ_SECONDS each (60), from the committed seeds in fuzz/corpus/<target>
# plus a working corpus in target/fuzz-corpus/<target> that keeps growing across
# runs on one machine. Fails on a crash or a broken invariant (the input is left in
# fuzz/artifacts/<target>/ and its base64 printed); prints each target's
# executions, exec/s and coverage, libFuzzer's closing `DONE` line.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
TARGETS=(issuance_body verification_body)
need_cargo_tool cargo-fuzz 0.13.1
# cargo-fuzz passes -Z flags (the sanitizer, the coverage passes' options) to rustc.
export RUSTC_BOOTSTRAP=1

echo "[fuzz] building ${TARGETS[*]} (cargo fuzz build, AddressSanitizer, debug assertions)"
cargo fuzz build --fuzz-dir fuzz

pids=()
for t in "${TARGETS[@]}"; do
    mkdir -p "target/fuzz-corpus/$t"
    cargo fuzz run --fuzz-dir fuzz "$t" "$PWD/target/fuzz-corpus/$t" "$PWD/fuzz/corpus/$t" -- \
        -dict="$PWD/fuzz/json.dict" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
        -print_final_stats=1 >"target/fuzz-$t.log" 2>&1 &
    pids+=("$!")
done

failed=0
for i in "${!TARGETS[@]}"; do
    t="${TARGETS[$i]}"
    if wait "${pids[$i]}"; then
        edges=$(sed -n 's/.*Loaded 1 modules *(\([0-9]*\) inline 8-bit counters).*/\1/p' "target/fuzz-$t.log" | head -n 1)
        done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "target/fuzz-$t.log" | tail -n 1)
        echo "[fuzz] $t: ${done_line:-no DONE line} (of ${edges:-?} edges instrumented)"
    else
        failed=1
        echo "[fuzz] $t FAILED: a crash or a broken invariant; the input is in fuzz/artifacts/$t/"
        grep -E -A 12 'panicked at|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)' "target/fuzz-$t.log" | head -n 40 || true
        grep -E '^(Base64:|artifact_prefix|Test unit written)' "target/fuzz-$t.log" || true
        echo "[fuzz] minimise it: RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz $t <the artifact>"
    fi
done
exit "$failed"
