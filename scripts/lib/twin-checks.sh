# shellcheck shell=bash
# What scripts/check-twin.sh and scripts/check-twin-db.sh share: their headings and
# failures, and the contract as a new user meets it: the curl commands scripts/up.sh
# printed, run as printed (the id of the first pasted in): 201 with the issuer's key,
# 401 with WWW-Authenticate: Bearer without one, the verifier's whole view, the
# anonymous public view, and the whole view for a caller who sends the holder's name
# and email (on a fresh database: the first issue must be a 201).

say() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAILED: %s\n' "$*"
    exit 1
}

# Runs the command up.sh printed (in UPLOG) under the comment starting with MARK,
# the id pasted in, as a user would paste it.
contract_printed() { # uplog mark [id]
    awk -v m="# $2" 'index($0, m) == 3 { on = 1; next } on && /^$/ { exit } on' "$1" |
        sed "s/PASTE-ID-HERE/${3:-}/" | bash
}

# Prints what went wrong and returns 1 at the first answer the contract does not allow.
contract_check() { # uplog
    local answer id
    answer=$(contract_printed "$1" "201: issue")
    grep -q '^HTTP/[0-9.]* 201' <<<"$answer" || { echo "the printed issue command did not get 201: $answer"; return 1; }
    id=$(sed -nE 's/.*"credential":\{"id":"([0-9a-f-]{36})".*/\1/p' <<<"$answer")
    [ -n "$id" ] || { echo "no credential id in: $answer"; return 1; }
    answer=$(contract_printed "$1" "401")
    { grep -q '^HTTP/[0-9.]* 401' <<<"$answer" && grep -qi '^WWW-Authenticate: Bearer' <<<"$answer"; } || {
        echo "the printed keyless issue command did not get 401 with WWW-Authenticate: Bearer: $answer"
        return 1
    }
    answer=$(contract_printed "$1" "200: verify it with the verifier key" "$id")
    grep -q '"email":"john@example.com"' <<<"$answer" || { echo "the verifier does not see the whole credential: $answer"; return 1; }
    answer=$(contract_printed "$1" "200: verify it without a key" "$id")
    { grep -q "\"id\":\"$id\"" <<<"$answer" && ! grep -q '"email"' <<<"$answer"; } || {
        echo "the anonymous view is not the public one: $answer"
        return 1
    }
    answer=$(contract_printed "$1" "200: without a key but with" "$id")
    grep -q '"email":"john@example.com"' <<<"$answer" || {
        echo "the holder's name and email do not show the whole credential: $answer"
        return 1
    }
    echo "ok: 201 with the issuer's key, 401 without, whole and public views"
}
