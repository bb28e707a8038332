# shellcheck shell=bash
# Fargate-sized tasks: each task in a cgroup of its own with a CPU quota of
# TASK_CPU vCPU (e.g. 0.25) and a memory limit of TASK_MEMORY_MB (e.g. 512), for
# scripts/up.sh, scripts/rollout.sh and load/limit.sh.
#
#   cgroup v2 (one hierarchy at /sys/fs/cgroup): cpu.max, memory.max (+ memory.swap.max 0)
#   cgroup v1 (cpu and memory controllers mounted apart): cpu.cfs_quota_us /
#             cpu.cfs_period_us, memory.limit_in_bytes
#
# The groups live under kube-credential/GROUP/TASK; a task enters its group
# through scripts/lib/cgroup-exec.sh, which moves itself in and then execs the
# binary (so the pid stays the task's). When neither hierarchy is writable the
# scripts say so and run the tasks unconfined.
#
# The v1 path is what the development machine has and is tested; the v2 path
# follows the kernel's cgroup-v2 documentation but has not run here.

KC_CG_VERSION=""  # 1 or 2 once cg_init found a usable hierarchy
KC_CG_PERIOD_US=100000
KC_CG_FS=${KC_CG_FS:-/sys/fs/cgroup}

cg_say() { printf '[cgroup] %s\n' "$*" >&2; }

# Whether a task size was asked for.
cg_wanted() { [ -n "${TASK_CPU:-}${TASK_MEMORY_MB:-}" ]; }

# Checks TASK_CPU / TASK_MEMORY_MB and finds the hierarchy; returns 1 on a bad
# value. Without a writable hierarchy it warns and leaves KC_CG_VERSION empty.
cg_init() {
    KC_CG_VERSION=""
    cg_wanted || return 0
    if [ -n "${TASK_CPU:-}" ] && ! awk -v c="$TASK_CPU" 'BEGIN { exit !(c ~ /^[0-9]*\.?[0-9]+$/ && c >= 0.01 && c <= 64) }'; then
        cg_say "TASK_CPU must be a number of vCPUs from 0.01 to 64, e.g. 0.25 (got '$TASK_CPU')"
        return 1
    fi
    if [ -n "${TASK_MEMORY_MB:-}" ] && ! [[ $TASK_MEMORY_MB =~ ^[0-9]+$ && $TASK_MEMORY_MB -ge 16 ]]; then
        cg_say "TASK_MEMORY_MB must be a whole number of MiB, at least 16, e.g. 512 (got '$TASK_MEMORY_MB')"
        return 1
    fi
    if [ -f "$KC_CG_FS/cgroup.controllers" ]; then
        local have
        have=$(cat "$KC_CG_FS/cgroup.controllers")
        if [[ " $have " == *" cpu "* && " $have " == *" memory "* ]] && [ -w "$KC_CG_FS/cgroup.subtree_control" ]; then
            KC_CG_VERSION=2
        fi
    elif [ -w "$KC_CG_FS/cpu" ] && [ -w "$KC_CG_FS/memory" ] && [ -f "$KC_CG_FS/cpu/cpu.cfs_quota_us" ]; then
        KC_CG_VERSION=1
    fi
    if [ -z "$KC_CG_VERSION" ]; then
        cg_say "no writable cgroup hierarchy (v2 with the cpu and memory controllers, or v1's cpu and memory, under $KC_CG_FS; usually needs root):"
        cg_say "TASK_CPU/TASK_MEMORY_MB ignored, the tasks run unconfined"
    fi
}

# The quota in microseconds per period for TASK_CPU vCPUs.
cg_quota_us() { awk -v c="$TASK_CPU" -v p="$KC_CG_PERIOD_US" 'BEGIN { printf "%d\n", c * p + 0.5 }'; }

# The directories of GROUP/TASK (one per v1 controller, one for v2); TASK may be empty.
cg_dirs() { # group [task]
    local rel="kube-credential/$1${2:+/$2}"
    if [ "$KC_CG_VERSION" = 2 ]; then
        echo "$KC_CG_FS/$rel"
    else
        [ -n "${TASK_CPU:-}" ] && echo "$KC_CG_FS/cpu/$rel"
        [ -n "${TASK_MEMORY_MB:-}" ] && echo "$KC_CG_FS/memory/$rel"
    fi
    return 0
}

# Creates the task's cgroup with the limits and prints the files a process
# writes its pid to (for cgroup-exec.sh), one per line. Prints nothing when no
# limit applies.
cg_prepare() { # group task
    [ -n "$KC_CG_VERSION" ] || return 0
    local dir
    if [ "$KC_CG_VERSION" = 2 ]; then
        # Controllers must be enabled on every level above the task's group, and
        # v2 allows no processes in a group that hands them down (only the
        # root may): kube-credential/ and GROUP/ hold none.
        local level=$KC_CG_FS part
        for part in kube-credential "$1"; do
            echo "+cpu +memory" >"$level/cgroup.subtree_control" || {
                cg_say "cannot enable the cpu and memory controllers in $level"
                return 1
            }
            level=$level/$part
            mkdir -p "$level"
        done
        dir=$(cg_dirs "$1" "$2")
        mkdir -p "$dir"
        if [ -n "${TASK_CPU:-}" ]; then echo "$(cg_quota_us) $KC_CG_PERIOD_US" >"$dir/cpu.max"; fi
        if [ -n "${TASK_MEMORY_MB:-}" ]; then
            echo $((TASK_MEMORY_MB * 1048576)) >"$dir/memory.max"
            # Fargate tasks have no swap.
            if [ -f "$dir/memory.swap.max" ]; then echo 0 >"$dir/memory.swap.max"; fi
        fi
        echo "$dir/cgroup.procs"
        return 0
    fi
    while read -r dir; do
        mkdir -p "$dir"
        case "$dir" in
            "$KC_CG_FS/cpu/"*)
                echo "$KC_CG_PERIOD_US" >"$dir/cpu.cfs_period_us"
                cg_quota_us >"$dir/cpu.cfs_quota_us"
                ;;
            "$KC_CG_FS/memory/"*)
                echo $((TASK_MEMORY_MB * 1048576)) >"$dir/memory.limit_in_bytes"
                if [ -f "$dir/memory.memsw.limit_in_bytes" ]; then
                    echo $((TASK_MEMORY_MB * 1048576)) >"$dir/memory.memsw.limit_in_bytes"
                fi
                ;;
        esac
        echo "$dir/cgroup.procs"
    done < <(cg_dirs "$1" "$2")
}

# "periods throttled seconds" of the task's CPU quota so far; "0 0 0" without one.
cg_cpu_stat() { # group task
    local dir
    if [ "$KC_CG_VERSION" = 2 ]; then
        dir=$(cg_dirs "$1" "$2")
    elif [ "$KC_CG_VERSION" = 1 ] && [ -n "${TASK_CPU:-}" ]; then
        dir="$KC_CG_FS/cpu/kube-credential/$1/$2"
    fi
    if [ -z "${dir:-}" ] || [ ! -f "$dir/cpu.stat" ]; then
        echo "0 0 0"
        return 0
    fi
    # v1 counts throttled_time in ns, v2 throttled_usec in µs.
    awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 }
        $1 == "throttled_time" { s = $2 / 1e9 } $1 == "throttled_usec" { s = $2 / 1e6 }
        END { printf "%d %d %.1f\n", p, t, s }' "$dir/cpu.stat"
}

# What the task's cgroup saw: CPU throttling, peak memory, OOM kills. One line;
# nothing when the task had no cgroup.
cg_report() { # group task
    [ -n "$KC_CG_VERSION" ] || return 0
    local mem_dir periods throttled throttled_s peak="" ooms=0
    read -r periods throttled throttled_s < <(cg_cpu_stat "$1" "$2")
    if [ "$KC_CG_VERSION" = 2 ]; then
        mem_dir=$(cg_dirs "$1" "$2")
        [ -d "$mem_dir" ] || return 0
        [ -f "$mem_dir/memory.peak" ] && peak=$(cat "$mem_dir/memory.peak")
        ooms=$(awk '$1 == "oom_kill" { print $2 }' "$mem_dir/memory.events")
    else
        mem_dir="$KC_CG_FS/memory/kube-credential/$1/$2"
        if [ -n "${TASK_MEMORY_MB:-}" ] && [ -d "$mem_dir" ]; then
            peak=$(cat "$mem_dir/memory.max_usage_in_bytes")
            ooms=$(awk '$1 == "oom_kill" { print $2 }' "$mem_dir/memory.oom_control")
        fi
    fi
    local out="$2:"
    if [ -n "${TASK_CPU:-}" ]; then
        out+=" CPU throttled in $throttled of $periods periods (${throttled_s} s) under ${TASK_CPU} vCPU;"
    fi
    if [ -n "${TASK_MEMORY_MB:-}" ]; then
        out+=" peak memory $(((${peak:-0} + 524288) / 1048576)) of ${TASK_MEMORY_MB} MB, OOM kills ${ooms:-0}"
    fi
    echo "${out%;}"
}

# Whether the kernel's OOM killer ended a process of the task's cgroup.
cg_oom_killed() { # group task
    [ -n "${TASK_MEMORY_MB:-}" ] && [ -n "$KC_CG_VERSION" ] || return 1
    local n
    if [ "$KC_CG_VERSION" = 2 ]; then
        n=$(awk '$1 == "oom_kill" { print $2 }' "$(cg_dirs "$1" "$2")/memory.events" 2>/dev/null)
    else
        n=$(awk '$1 == "oom_kill" { print $2 }' "$KC_CG_FS/memory/kube-credential/$1/$2/memory.oom_control" 2>/dev/null)
    fi
    [ "${n:-0}" -gt 0 ]
}

# Removes GROUP's cgroups (or one task's); they must hold no process any more.
cg_remove() { # group [task]
    local dir
    for dir in "$KC_CG_FS/kube-credential/$1${2:+/$2}" "$KC_CG_FS/cpu/kube-credential/$1${2:+/$2}" \
        "$KC_CG_FS/memory/kube-credential/$1${2:+/$2}"; do
        [ -d "$dir" ] || continue
        find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || cg_say "could not remove $dir (a process still in it?)"
    done
    return 0
}
