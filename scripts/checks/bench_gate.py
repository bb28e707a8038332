"""The benchmark-regression gate's comparison: reads gungraun's JSON lines
(one per benchmark) on stdin, compares each benchmark's instruction count with
the committed baseline, prints a table, and exits 1 when any is more than
the tolerance above its baseline (or is missing from it). With --update it
writes the baseline instead, with the toolchain it was measured with.

    python3 bench_gate.py BASELINE.json [--tolerance PCT] [--update] < gungraun.jsonl
"""
import argparse
import json
import platform
import subprocess
import sys


def instructions(line):
    """(name, instructions) of one gungraun JSON line."""
    bench = json.loads(line)
    name = bench["module_path"].split("::", 1)[-1] + (f" {bench['id']}" if bench.get("id") else "")
    total = bench["profiles"][0]["summaries"]["total"]["summary"]["Callgrind"]["Ir"]["metrics"]
    # {"Both": [new, old]} or {"Left": new}: the first is this run's.
    value = next(iter(total.values()))
    value = value[0] if isinstance(value, list) else value
    return name, int(next(iter(value.values())))


def toolchain():
    def out(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"rustc": out("rustc", "--version"), "valgrind": out("valgrind", "--version"),
            "cpu": cpu, "machine": platform.machine()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("baseline")
    p.add_argument("--tolerance", type=float, default=5.0, help="percent above the baseline that fails")
    p.add_argument("--update", action="store_true", help="write the baseline from this run")
    args = p.parse_args()
    current = dict(instructions(l) for l in sys.stdin if l.strip().startswith("{"))
    if not current:
        sys.exit("bench gate: no benchmark results on stdin")
    if args.update:
        with open(args.baseline, "w") as f:
            json.dump({"measured_with": toolchain(), "instructions": dict(sorted(current.items()))}, f, indent=2)
            f.write("\n")
        print(f"bench gate: baseline of {len(current)} benchmarks written to {args.baseline}")
        return
    with open(args.baseline) as f:
        saved = json.load(f)
    baseline = saved["instructions"]
    failed = []
    rows = []
    for name in sorted(set(current) | set(baseline)):
        new, old = current.get(name), baseline.get(name)
        if new is None:
            rows.append((name, f"{old:,}", "gone", "", "FAIL"))
            failed.append(name)
            continue
        if old is None:
            rows.append((name, "none", f"{new:,}", "", "FAIL (not in the baseline)"))
            failed.append(name)
            continue
        change = 100.0 * (new - old) / old
        verdict = "ok" if change <= args.tolerance else "FAIL"
        if change < -args.tolerance:
            verdict = "ok (faster: update the baseline)"
        if verdict == "FAIL":
            failed.append(name)
        rows.append((name, f"{old:,}", f"{new:,}", f"{change:+.2f} %", verdict))
    width = max(len(r[0]) for r in rows)
    print(f"| {'benchmark'.ljust(width)} | {'baseline':>10} | {'now':>10} | {'change':>9} | |")
    print(f"| {'-' * width} | {'-' * 10}: | {'-' * 10}: | {'-' * 9}: | --- |")
    for name, old, new, change, verdict in rows:
        print(f"| {name.ljust(width)} | {old:>10} | {new:>10} | {change:>9} | {verdict} |")
    now = toolchain()
    then = saved.get("measured_with", {})
    for key in ("rustc", "valgrind", "cpu"):
        if then.get(key) not in (None, now[key]):
            print(f"note: the baseline was measured with {key} {then[key]!r}, this run with {now[key]!r}")
    if failed:
        print(f"bench gate: {len(failed)} of {len(rows)} benchmarks more than {args.tolerance:g} % above the baseline "
              f"(or missing): {', '.join(failed)}")
        sys.exit(1)
    print(f"bench gate: {len(rows)} benchmarks within {args.tolerance:g} % of the baseline")


if __name__ == "__main__":
    main()
