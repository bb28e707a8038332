# shellcheck shell=bash
# API keys for the scripts that run tasks with authentication on (AUTH_MODE=required,
# the services' default): scripts/up.sh, check-twin.sh, check-lb.sh, load/limit.sh and
# load/ab.sh. Keys are made by `issuance clients add` (core/src/auth/admin.rs), which
# prints the key alone on stdout; it needs the tasks' DATABASE_URL (and DB_SSLMODE) in
# the environment and applies the migrations first. Client names are unique forever,
# even once revoked, so every name carries a time stamp and the shell's pid.

# The variables above, for `env -u`: the tasks themselves need no key.
# shellcheck disable=SC2034 # used by the scripts that source this
KEYS_UNSET=(-u ISSUER_NAME -u ISSUER_KEY -u VERIFIER_NAME -u VERIFIER_KEY)

# Whether the tasks check keys: AUTH_MODE unset or "required" (any case) means yes.
keys_auth_on() {
    [ "$(printf '%s' "${AUTH_MODE:-required}" | tr '[:upper:]' '[:lower:]')" != off ]
}

# Creates an issuer and a verifier with their own rate limit (requests/s per task,
# 1 to 2147483647) and sets ISSUER_NAME, ISSUER_KEY, VERIFIER_NAME and VERIFIER_KEY.
keys_create() { # issuance-binary name-prefix rate-limit
    local stamp
    stamp="$(date +%Y%m%d-%H%M%S)-$$-$RANDOM"
    ISSUER_NAME="$2-issuer-$stamp"
    VERIFIER_NAME="$2-verifier-$stamp"
    ISSUER_KEY=$("$1" clients add "$ISSUER_NAME" --role issuer --rate-limit "$3") || return 1
    VERIFIER_KEY=$("$1" clients add "$VERIFIER_NAME" --role verifier --rate-limit "$3") || return 1
}

# Writes the four variables as KEY=VALUE lines to FILE, readable by its owner only.
keys_write() { # file
    rm -f "$1"
    (
        umask 077
        printf 'ISSUER_NAME=%s\nISSUER_KEY=%s\nVERIFIER_NAME=%s\nVERIFIER_KEY=%s\n' \
            "$ISSUER_NAME" "$ISSUER_KEY" "$VERIFIER_NAME" "$VERIFIER_KEY" >"$1"
    )
    chmod 600 "$1"
}

# Reads FILE as keys_write wrote it (parsed, not executed) and sets its variables
# (not exported: export what a program needs); returns 1 when there is no such file.
keys_read() { # file
    [ -f "$1" ] || return 1
    local line
    while IFS= read -r line; do
        if [[ $line =~ ^(ISSUER|VERIFIER)_(NAME|KEY)=([A-Za-z0-9._-]*)$ ]]; then
            printf -v "${BASH_REMATCH[1]}_${BASH_REMATCH[2]}" '%s' "${BASH_REMATCH[3]}"
        fi
    done <"$1"
}

# Whether the task on 127.0.0.1:PORT has loaded the API clients: until it has, a
# request with a key gets 503 (its /health does not wait for them). Asks with the
# service's key (ISSUER_KEY or VERIFIER_KEY; true at once when it is unset) and an
# empty JSON body, which a task that knows the key refuses with a 400. Needs no curl.
keys_loaded() { # service port
    local key=${VERIFIER_KEY:-} status
    [ "$1" = issuance ] && key=${ISSUER_KEY:-}
    [ -n "$key" ] || return 0
    status=$(
        exec 3<>"/dev/tcp/127.0.0.1/$2" || exit 1
        printf 'POST /%s/credentials HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n' "$1" "$key" >&3
        printf 'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}' >&3
        head -n 1 <&3
    ) 2>/dev/null || return 1
    status=${status#HTTP/1.? }
    [ -n "$status" ] && [ "${status%% *}" != 503 ]
}

# Revokes the clients FILE names and removes it; quiet, never fails (EXIT traps).
keys_revoke() { # issuance-binary file
    local name
    [ -f "$2" ] || return 0
    while read -r name; do
        "$1" clients revoke "$name" >/dev/null 2>&1 || true
    done < <(sed -nE 's/^(ISSUER|VERIFIER)_NAME=//p' "$2")
    rm -f "$2"
}
