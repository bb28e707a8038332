#!/usr/bin/env bash
# Moves this process into the given cgroups, then becomes the command, so the
# task keeps this pid and is confined from its first instruction:
#
#   scripts/lib/cgroup-exec.sh /sys/fs/cgroup/.../cgroup.procs ... -- COMMAND [ARGS...]
#
# (scripts/lib/cgroup.sh's cg_prepare prints the cgroup.procs files.)
set -euo pipefail
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    echo $$ >"$1"
    shift
done
[ $# -gt 1 ] || {
    echo "usage: cgroup-exec.sh PROCS_FILE... -- COMMAND [ARGS...]" >&2
    exit 2
}
shift
exec "$@"
