#!/usr/bin/env bash
# Builds the release binaries the way the Dockerfile does (static musl,
# `cargo build --release --locked --bin SERVICE`) and checks what the image
# relies on: no dynamic libraries, `--version`, and the HEALTHCHECK command
# (`SERVICE healthcheck`) passing against a running task and failing once it is
# gone, with the task run as the image's unprivileged user 65532.
# No Docker engine is needed. Ends with "image checks: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
    # ring (TLS) compiles C; for musl it needs musl's compiler wrapper.
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null
    else
        echo "musl-gcc is missing: sudo apt-get install -y musl-tools" >&2
        exit 1
    fi
fi

# The build context the Dockerfile sees: exactly the paths its COPY lines name
# (so a file the build needs but the Dockerfile forgets fails here too).
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
while read -r src; do
    mkdir -p "$CONTEXT/$(dirname "$src")"
    cp -rT "$src" "$CONTEXT/$src"
done < <(awk '/^COPY / && !/--from/ { for (i = 2; i < NF; i++) print $i }' Dockerfile)
echo "== cargo build --release --locked --target $TARGET in the Dockerfile's build context"
TARGET_DIR=$PWD/target
(cd "$CONTEXT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked --quiet --target "$TARGET" --bin issuance --bin verification)
BIN=target/$TARGET/release
VERSION=$(sed -nE '/^\[workspace.package\]/,/^\[/ s/^version = "(.*)"/\1/p' Cargo.toml)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The image runs as 65532:65532 (USER in the Dockerfile); do the same when we
# can (root, and the checkout readable by that user). First argument: the binary.
# It execs, so run in the background its pid is the task's.
as_image_user() {
    if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1 &&
        setpriv --reuid 65532 --regid 65532 --clear-groups test -x "$1"; then
        shift
        exec setpriv --reuid 65532 --regid 65532 --clear-groups "$@"
    else
        shift
        exec "$@"
    fi
}

for service in issuance verification; do
    bin=$BIN/$service
    size=$(stat -c %s "$bin")
    if ldd "$bin" 2>&1 | grep -qE 'not a dynamic executable|statically linked'; then
        ok "$service: static binary ($((size / 1024)) KiB), runs on scratch"
    else
        bad "$service: links dynamic libraries: $(ldd "$bin" 2>&1 | tr '\n' ' ')"
    fi
    if [ "$("$bin" --version)" = "$service $VERSION" ]; then
        ok "$service --version"
    else
        bad "$service --version printed '$("$bin" --version)'"
    fi

    port=$(free_port)
    # No database is needed for liveness: point it at a closed port.
    as_image_user "$bin" env -i PORT="$port" BIND_ADDR=127.0.0.1 DATABASE_URL=postgres://postgres@127.0.0.1:1/none \
        RUN_MIGRATIONS=false LOG_LEVEL=warn "$bin" >"target/check-image-$service.log" 2>&1 &
    pid=$!
    healthy=""
    for _ in $(seq 1 50); do
        if env -i PORT="$port" "$bin" healthcheck 2>/dev/null; then
            healthy=1
            break
        fi
        sleep 0.1
    done
    if [ -n "$healthy" ]; then
        ok "$service healthcheck passes against the running task (as uid $(stat -c %u /proc/$pid))"
    else
        bad "$service healthcheck never passed; log: target/check-image-$service.log"
    fi
    kill -TERM "$pid"
    if wait "$pid"; then
        ok "$service exits 0 on SIGTERM"
    else
        bad "$service exit status $? on SIGTERM"
    fi
    if env -i PORT="$port" "$bin" healthcheck 2>/dev/null; then
        bad "$service healthcheck passes with no task running"
    else
        ok "$service healthcheck fails with no task running"
    fi
done

echo "image checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
