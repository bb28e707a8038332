"""The report of an interleaved A/B comparison (load/ab.sh: two builds;
load/limit.sh with AUTH_COMPARE=1: AUTH_MODE=off against keys checked; with
BULK_COMPARE=1: single requests against bulk requests).

    python3 load/ab_report.py SERVICE LABEL_A LABEL_B CLK_TCK [JSON_OUT] <results

Reads "side round cpu_ticks WRK_JSON" lines (side a or b) and prints each round
and each side's median credentials/s, p99 and CPU time per credential, with the
ratio of the medians B/A and the median of the per-round ratios B/A. With
JSON_OUT, also writes those figures there as one line of JSON. A credential is
a request's, or for bulk requests (load/wrk/*_bulk.lua) an item answered as
expected ("items_ok"); a p99 is a request's.
"""
import json
import statistics
import sys


def read(lines, hz):
    rows = {"a": [], "b": []}
    for line in lines:
        side, round_, ticks, data = line.split(" ", 3)
        w = json.loads(data)
        done = w.get("items_ok", w["requests"])
        rps = done / (w["duration_us"] / 1e6)
        cpu_us = int(ticks) / hz * 1e6 / max(done, 1)
        # A bulk item not answered as expected is an error like a request's non-2xx.
        missed = w["requests"] * w.get("items", 1) - done if "items" in w else 0
        rows[side].append((int(round_), rps, w["p99_us"] / 1000, cpu_us, w["non2xx"] + w["errors"] + max(missed, 0)))
    return rows


def summary(rows):
    med = lambda side, i: statistics.median(x[i] for x in rows[side])
    pairs = list(zip(rows["a"], rows["b"]))
    s = {
        "rounds": len(pairs),
        "a_rps": med("a", 1), "b_rps": med("b", 1),
        "a_p99_ms": med("a", 2), "b_p99_ms": med("b", 2),
        "a_cpu_us_per_request": med("a", 3), "b_cpu_us_per_request": med("b", 3),
        "rps_ratio_of_medians": med("b", 1) / med("a", 1),
        "rps_ratio_median_per_round": statistics.median(y[1] / x[1] for x, y in pairs),
        "cpu_ratio_of_medians": med("b", 3) / med("a", 3),
        "cpu_ratio_median_per_round": statistics.median(y[3] / x[3] for x, y in pairs),
        "errors": sum(x[4] for side in rows.values() for x in side),
    }
    return s


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    service, a, b, hz = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rows = read(sys.stdin, hz)
    s = summary(rows)
    print(f"{service}: A = {a}, B = {b}")
    print("| round | A credentials/s | B credentials/s | B/A | A p99 ms | B p99 ms | A CPU µs/credential | B CPU µs/credential | B/A |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (r, ra, pa, ca, _), (_, rb, pb, cb, _) in zip(rows["a"], rows["b"]):
        print(f"| {r} | {ra:,.0f} | {rb:,.0f} | {rb / ra:.3f} | {pa:.2f} | {pb:.2f} | {ca:.1f} | {cb:.1f} | {cb / ca:.3f} |")
    print(f"median credentials/s: A {s['a_rps']:,.0f}, B {s['b_rps']:,.0f}; ratio of the medians B/A = "
          f"{s['rps_ratio_of_medians']:.3f}; median of the per-round ratios B/A = {s['rps_ratio_median_per_round']:.3f}")
    print(f"median CPU per credential: A {s['a_cpu_us_per_request']:.1f} µs, B {s['b_cpu_us_per_request']:.1f} µs; ratio of the medians B/A = "
          f"{s['cpu_ratio_of_medians']:.3f}; median of the per-round ratios B/A = {s['cpu_ratio_median_per_round']:.3f}")
    print(f"errors and non-2xx: {s['errors']}")
    if len(sys.argv) == 6:
        with open(sys.argv[5], "w") as f:
            json.dump(dict(service=service, a=a, b=b, **s), f)
            f.write("\n")


if __name__ == "__main__":
    main()
