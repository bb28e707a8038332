"""load/limit.sh's arithmetic and report.

    python3 load/limit_report.py wrk 'WRK_JSON-LINE' HWM_KB TASK_CPU_PCT MACHINE_BUSY_PCT
        prints "rps p50_ms p99_ms peak_rss_mb non2xx errors requests task_cpu_pct machine_busy_pct"
        for one wrk run (the JSON line load/wrk/report.lua prints)
    python3 load/limit_report.py rps 'WRK_JSON-LINE'
        prints the requests (bulk: items answered as expected) per second of one wrk run
    python3 load/limit_report.py report OUT_DIR
        reads OUT_DIR/facts.txt ("key value" lines written by limit.sh), writes
        OUT_DIR/limit-<date>.json and OUT_DIR/limit-latest.json and prints the table
"""

import datetime
import json
import os
import sys


# Issue 16: checking API keys may cost at most 3 % of a task's throughput.
AUTH_COST_BOUND = 0.97


# Issue 18: credentials per second through bulk requests of 100 at least 3x single requests.
BULK_GAIN_BOUND = 3.0


def rps_of(line):
    """Requests per second, or for bulk requests items answered as expected per second."""
    w = json.loads(line)
    return w.get("items_ok", w["requests"]) / (w["duration_us"] / 1e6)


def wrk(line, hwm_kb, task_cpu, machine_busy):
    w = json.loads(line)
    rps = rps_of(line)
    print(
        f'{rps:.0f} {w["p50_us"] / 1000:.2f} {w["p99_us"] / 1000:.2f} {int(hwm_kb) / 1024:.1f} '
        f'{w["non2xx"]} {w["errors"]} {w["requests"]} {task_cpu} {machine_busy}'
    )


def read_facts(out):
    facts = {}
    with open(os.path.join(out, "facts.txt")) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            facts[key] = value
    return facts


def task(facts, prefix):
    rps, p50, p99, rss, non2xx, errors, requests, cpu, busy = facts[f"{prefix}_wrk"].split()
    t = dict(
        rps=float(rps), p50_ms=float(p50), p99_ms=float(p99), peak_rss_mb=float(rss), non2xx=int(non2xx),
        errors=int(errors), requests=int(requests), task_cpu_pct=int(cpu), machine_busy_pct=int(busy),
    )
    t["task_cores"] = round(t["task_cpu_pct"] * os.cpu_count() / 100, 2)
    if facts.get(f"{prefix}_cgroup"):
        t["cgroup"] = facts[f"{prefix}_cgroup"]
    if facts.get(f"{prefix}_constant"):
        # "percent:rate:p99:ok:throttled/periods ..." in the order run (percent of the
        # wrk rate); ok means p99 within the bound with nothing failed or dropped.
        steps = []
        for step in facts[f"{prefix}_constant"].split():
            pct, rate, p99_ms, ok, throttled = step.split(":")
            steps.append(dict(percent=int(pct), rate=int(rate), p99_ms=float(p99_ms), ok=ok == "1", throttled_periods=throttled))
        t["constant_rate_steps"] = steps
        good = [s["rate"] for s in steps if s["ok"]]
        t["highest_rate_p99_within_bound"] = max(good) if good else 0
        t["p99_ms_at_half_saturation"] = next((s["p99_ms"] for s in steps if s["percent"] == 50), None)
    return t


def report(out):
    f = read_facts(out)
    r = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        cores=os.cpu_count(), target=f["target"], connections=int(f["connections"]), seconds=int(f["seconds"]),
        rows=int(f["rows"]), task_cpu=f.get("task_cpu") or None, task_memory_mb=f.get("task_memory_mb") or None,
        p99_bound_ms=float(f.get("p99_bound_ms", 25)),
        checkpoints_during_issuance=int(f["checkpoints"]),
        load_average_before=f.get("load_before", ""),
        auth_mode=f.get("auth_mode", "required"),
    )
    for name in ("select", "insert"):
        tps, p50, p99 = f[f"pgbench_{name}"].split()
        r[f"pgbench_{name}_tps"], r[f"pgbench_{name}_p50_ms"], r[f"pgbench_{name}_p99_ms"] = float(tps), float(p50), float(p99)
    r["verify"] = task(f, "verify")
    r["issue"] = task(f, "issue")
    r["issue"].update(answered_201=int(f["created"]), rows_stored=int(f["stored"]), every_201_stored=f["check"])
    for prefix in ("verify", "issue"):
        # load/ab_report.py's figures: a is AUTH_MODE=off, b keys checked.
        if f.get(f"{prefix}_auth_compare"):
            c = json.loads(f[f"{prefix}_auth_compare"])
            c["cgroup"] = f.get(f"{prefix}_auth_compare_cgroup", "")
            c["within_bound"] = c["rps_ratio_of_medians"] >= AUTH_COST_BOUND
            r[prefix]["auth_compare"] = c
        # a is single requests, b bulk requests (credentials per second each).
        if f.get(f"{prefix}_bulk_compare"):
            c = json.loads(f[f"{prefix}_bulk_compare"])
            c["cgroup"] = f.get(f"{prefix}_bulk_compare_cgroup", "")
            c["within_bound"] = c["rps_ratio_of_medians"] >= BULK_GAIN_BOUND
            r[prefix]["bulk_compare"] = c
    r["verify_ratio"] = r["verify"]["rps"] / r["pgbench_select_tps"]
    r["issue_ratio"] = r["issue"]["rps"] / r["pgbench_insert_tps"]
    stamp = r["date"].replace(":", "").replace("-", "")
    for name in (f"limit-{stamp}.json", "limit-latest.json"):
        with open(os.path.join(out, name), "w") as fh:
            json.dump(r, fh, indent=2)
    print_table(r, out)


def print_table(r, out):
    v, i = r["verify"], r["issue"]
    size = ""
    if r["task_cpu"] or r["task_memory_mb"]:
        size = f", each task limited to {r['task_cpu'] or 'unlimited'} vCPU and {r['task_memory_mb'] or 'unlimited'} MB"
    print(f"""
load/limit.sh — {r['date']}, {r['cores']} cores, {r['connections']} connections, {r['seconds']} s each{size},
AUTH_MODE={r['auth_mode']}{' (wrk sends the keys)' if r['auth_mode'] != 'off' else ' (no keys)'}
(load average before the run: {r['load_average_before']}; other work on the machine skews every figure)

| what | per second | p50 ms | p99 ms | peak RSS MB | errors | task CPU | machine busy |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| pgbench SELECT by id | {r['pgbench_select_tps']:.0f} | {r['pgbench_select_p50_ms']:.2f} | {r['pgbench_select_p99_ms']:.2f} | | | | |
| pgbench INSERT | {r['pgbench_insert_tps']:.0f} | {r['pgbench_insert_p50_ms']:.2f} | {r['pgbench_insert_p99_ms']:.2f} | | | | |
| verification task (wrk) | {v['rps']:.0f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['peak_rss_mb']:.1f} | {v['non2xx'] + v['errors']} | {v['task_cpu_pct']} % | {v['machine_busy_pct']} % |
| issuance task (wrk) | {i['rps']:.0f} | {i['p50_ms']:.2f} | {i['p99_ms']:.2f} | {i['peak_rss_mb']:.1f} | {i['non2xx'] + i['errors']} | {i['task_cpu_pct']} % | {i['machine_busy_pct']} % |

(CPU columns: share of the whole {r['cores']}-core machine during the wrk run.
Checkpoints while issuance ran: {r['checkpoints_during_issuance']}.)
""")
    for label, t in (("verification", v), ("issuance", i)):
        if "cgroup" in t:
            print(f"{label} task's cgroup: {t['cgroup']}")
    if "constant_rate_steps" in v or "constant_rate_steps" in i:
        bound = r["p99_bound_ms"]
        print(f"\nConstant arrival rate (k6, open loop), p99 bound {bound:g} ms:\n")
        print(f"| task | saturation/s (wrk) | p99 at half of it | highest rate with p99 ≤ {bound:g} ms | CPU used | steps (rate/s: p99 ms, periods throttled) |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for label, t in (("verification", v), ("issuance", i)):
            if "constant_rate_steps" not in t:
                continue
            steps = ", ".join(f"{s['rate']}: {s['p99_ms']:.1f}{'' if s['ok'] else ' ✗'} ({s['throttled_periods']})" for s in t["constant_rate_steps"])
            print(f"| {label} | {t['rps']:.0f} | {t['p99_ms_at_half_saturation'] or 0:.1f} ms | {t['highest_rate_p99_within_bound']} | {t['task_cores']:.2f} cores | {steps} |")
    compared = [(label, t["auth_compare"]) for label, t in (("verification", v), ("issuance", i)) if "auth_compare" in t]
    if compared:
        print(f"\nWhat checking API keys costs (issue 16: keys/off ≥ {AUTH_COST_BOUND}), wrk on each in turn, medians:\n")
        print("| task | rounds | AUTH_MODE=off /s | keys /s | keys/off | per-round median | CPU µs/request off · keys | errors | ≥ 0.97 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for label, c in compared:
            print(f"| {label} | {c['rounds']} | {c['a_rps']:.0f} | {c['b_rps']:.0f} | {c['rps_ratio_of_medians']:.3f} | "
                  f"{c['rps_ratio_median_per_round']:.3f} | {c['a_cpu_us_per_request']:.1f} · {c['b_cpu_us_per_request']:.1f} | "
                  f"{c['errors']} | {'yes' if c['within_bound'] else 'NO'} |")
    bulk = [(label, t["bulk_compare"]) for label, t in (("verification", v), ("issuance", i)) if "bulk_compare" in t]
    if bulk:
        print(f"\nBulk against single requests (issue 18: bulk/single ≥ {BULK_GAIN_BOUND:g}), wrk on one task in turn, medians:\n")
        print("| task | rounds | single credentials/s | bulk credentials/s | bulk/single | per-round median | CPU µs/credential single · bulk | errors | ≥ 3 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for label, c in bulk:
            print(f"| {label} | {c['rounds']} | {c['a_rps']:.0f} | {c['b_rps']:.0f} | {c['rps_ratio_of_medians']:.2f} | "
                  f"{c['rps_ratio_median_per_round']:.2f} | {c['a_cpu_us_per_request']:.1f} · {c['b_cpu_us_per_request']:.1f} | "
                  f"{c['errors']} | {'yes' if c['within_bound'] else 'NO'} |")
    print(f"""
verify_rps / pgbench_select_tps = {r['verify_ratio']:.2f}
issue_rps / pgbench_insert_tps  = {r['issue_ratio']:.2f}
every 201 stored: {i['every_201_stored']} ({i['answered_201']} answered 201, {i['rows_stored']} rows)
JSON: {out}/limit-latest.json""")


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "wrk":
        wrk(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "rps":
        print(f"{rps_of(sys.argv[2]):.0f}")
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
