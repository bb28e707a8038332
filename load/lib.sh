# shellcheck shell=bash
# Shared by load/limit.sh and load/ab.sh, which both run release tasks in a
# scratch schema of their own: what they leave behind is stopped and dropped.
# The API clients they make (scripts/lib/keys.sh) live in that schema and go with it.

# shellcheck source=scripts/lib/keys.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/keys.sh"

# The tasks a script started (it appends each pid), and its scratch schema.
PIDS=()
SCHEMA=""

# Stops the tasks in PIDS (TERM, then waits for them to drain), drops SCHEMA
# and stops a private PostgreSQL the script started. For EXIT traps.
load_cleanup() {
    if [ ${#PIDS[@]} -gt 0 ]; then
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    [ -z "$SCHEMA" ] || pg_drop_schema "$SCHEMA"
    pg_stop_private
}
