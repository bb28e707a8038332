"""The report of load/ab.sh: reads "side round WRK_JSON" lines (side a or b)
and prints each round and each build's median requests/s and p99, and B/A."""
import json
import statistics
import sys


def main():
    service, a, b = sys.argv[1:4]
    rows = {"a": [], "b": []}
    for line in sys.stdin:
        side, round_, data = line.split(" ", 2)
        w = json.loads(data)
        rps = w["requests"] / (w["duration_us"] / 1e6)
        rows[side].append((int(round_), rps, w["p99_us"] / 1000, w["non2xx"] + w["errors"]))
    print(f"{service}: A = {a}, B = {b}")
    print("| round | A requests/s | B requests/s | B/A | A p99 ms | B p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for (r, ra, pa, _), (_, rb, pb, _) in zip(rows["a"], rows["b"]):
        print(f"| {r} | {ra:,.0f} | {rb:,.0f} | {rb / ra:.3f} | {pa:.2f} | {pb:.2f} |")
    ma = statistics.median(x[1] for x in rows["a"])
    mb = statistics.median(x[1] for x in rows["b"])
    ratio = statistics.median(b_[1] / a_[1] for a_, b_ in zip(rows["a"], rows["b"]))
    errors = sum(x[3] for side in rows.values() for x in side)
    print(f"median requests/s: A {ma:,.0f}, B {mb:,.0f}; median of the per-round ratios B/A = {ratio:.3f}; "
          f"errors and non-2xx: {errors}")


if __name__ == "__main__":
    main()
