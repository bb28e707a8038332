"""The report of load/ab.sh: reads "side round cpu_ticks WRK_JSON" lines (side
a or b) and prints each round and each build's median requests/s, p99 and
CPU time per request, with the ratios B/A."""
import json
import statistics
import sys


def main():
    service, a, b, hz = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rows = {"a": [], "b": []}
    for line in sys.stdin:
        side, round_, ticks, data = line.split(" ", 3)
        w = json.loads(data)
        rps = w["requests"] / (w["duration_us"] / 1e6)
        cpu_us = int(ticks) / hz * 1e6 / max(w["requests"], 1)
        rows[side].append((int(round_), rps, w["p99_us"] / 1000, cpu_us, w["non2xx"] + w["errors"]))
    print(f"{service}: A = {a}, B = {b}")
    print("| round | A requests/s | B requests/s | B/A | A p99 ms | B p99 ms | A CPU µs/request | B CPU µs/request | B/A |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (r, ra, pa, ca, _), (_, rb, pb, cb, _) in zip(rows["a"], rows["b"]):
        print(f"| {r} | {ra:,.0f} | {rb:,.0f} | {rb / ra:.3f} | {pa:.2f} | {pb:.2f} | {ca:.1f} | {cb:.1f} | {cb / ca:.3f} |")
    pairs = list(zip(rows["a"], rows["b"]))
    med = lambda side, i: statistics.median(x[i] for x in rows[side])
    rps_ratio = statistics.median(y[1] / x[1] for x, y in pairs)
    cpu_ratio = statistics.median(y[3] / x[3] for x, y in pairs)
    errors = sum(x[4] for side in rows.values() for x in side)
    print(f"median requests/s: A {med('a', 1):,.0f}, B {med('b', 1):,.0f}; median of the per-round ratios B/A = {rps_ratio:.3f}")
    print(f"median CPU per request: A {med('a', 3):.1f} µs, B {med('b', 3):.1f} µs; median of the per-round ratios B/A = {cpu_ratio:.3f}")
    print(f"errors and non-2xx: {errors}")


if __name__ == "__main__":
    main()
