# shellcheck shell=bash
# Shared by the deployment scripts (push_image.sh, deploy_ecs.sh, tunnel.sh):
# errors, .env loading that never prints values, and echoing commands for
# --dry-run. Each script sets PROG before using these.

die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit "${2:-1}"
}

# Reads KEY=VALUE lines without executing anything; keeps what the environment
# already has. Prints only how many variables were taken, never their values.
load_env_file() {
    local file=$1 line key value count=0
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[2]}
        value=${BASH_REMATCH[3]}
        if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
            value=${BASH_REMATCH[1]}
        fi
        [ -n "${!key+set}" ] && continue
        export "$key=$value"
        count=$((count + 1))
    done <"$file"
    printf '%s: read %d variable(s) from %s\n' "$PROG" "$count" "$file" >&2
}

# A command line the way a shell would take it back (quoting only what needs it).
quoted() {
    local out="" arg
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@,+%~-]+$ ]]; then
            out+=" $arg"
        elif [[ $arg == *"'"* && $arg != *[\"\$\`\\!]* ]]; then
            out+=" \"$arg\""
        else
            out+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s' "${out# }"
}

# Prints one command, prefixed with "+ ".
show() {
    printf '+ %s\n' "$(quoted "$@")"
}

# Exits with usage status 2 unless the argument names one of the two services.
require_service() {
    [ -n "$1" ] || die "SERVICE is missing: give issuance or verification (try --help)" 2
    case "$1" in
        issuance | verification) ;;
        *) die "SERVICE must be issuance or verification (got '$1')" 2 ;;
    esac
}
