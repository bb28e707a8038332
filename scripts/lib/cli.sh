# shellcheck shell=bash
# Shared by the deployment scripts (push_image.sh, deploy_ecs.sh, tunnel.sh):
# errors, the command line of the two SERVICE scripts, .env loading that never
# prints values, the checks of required variables, and echoing commands for
# --dry-run. Each script sets PROG and defines usage before using these.

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

# The command line of push_image.sh and deploy_ecs.sh: --dry-run (-n) sets
# DRY_RUN=1; --wait (-w) sets WAIT=1 where the script allows it
# (CLI_ALLOW_WAIT=1); --help (-h) prints the script's usage and exits 0; one
# SERVICE, issuance or verification, sets SERVICE. Anything else exits 2.
# shellcheck disable=SC2034 # DRY_RUN and WAIT are read by the calling script
parse_service_args() {
    DRY_RUN=""
    WAIT=""
    SERVICE=""
    local arg
    for arg in "$@"; do
        case "$arg" in
            --dry-run | -n) DRY_RUN=1 ;;
            --wait | -w)
                [ -n "${CLI_ALLOW_WAIT:-}" ] || die "unknown option: $arg (try --help)" 2
                WAIT=1
                ;;
            --help | -h)
                usage
                exit 0
                ;;
            -*) die "unknown option: $arg (try --help)" 2 ;;
            *)
                [ -z "$SERVICE" ] || die "only one SERVICE may be given (got '$SERVICE' and '$arg')" 2
                SERVICE=$arg
                ;;
        esac
    done
    require_service "$SERVICE"
}

# Exits unless every named variable is set and non-empty, naming the missing ones.
require_vars() {
    local var missing=()
    for var in "$@"; do
        [ -n "${!var:-}" ] || missing+=("$var")
    done
    case ${#missing[@]} in
        0) return 0 ;;
        1) die "missing variable(s): ${missing[0]} (set it in the environment or in .env; see --help)" ;;
        *) die "missing variable(s): ${missing[*]} (set them in the environment or in .env; see --help)" ;;
    esac
}

# Exits unless AWS_REGION looks like a region name, and AWS_ACCOUNT_ID, when
# set, like an account id.
check_aws_names() {
    [[ $AWS_REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "AWS_REGION is not a region name such as eu-west-1 (got '$AWS_REGION')"
    if [ -n "${AWS_ACCOUNT_ID:-}" ] && ! [[ $AWS_ACCOUNT_ID =~ ^[0-9]{12}$ ]]; then
        die "AWS_ACCOUNT_ID must be 12 digits (got '$AWS_ACCOUNT_ID')"
    fi
}
