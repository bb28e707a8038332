#!/usr/bin/env python3
"""Compares two k6 runs from the JSON reports their handleSummary wrote
(target/k6/NAME.json, see load/summary.js): requests per second, failures,
dropped iterations and every http_req_duration series' percentiles, side by
side with the ratio B/A.

    load/k6_compare.py before/mixed.json after/mixed.json
    load/k6_compare.py A.json B.json --fail-above 10   # exit 1 if B's p99 or rate is >10 % worse

Quote the ratio, not the absolute figures, when the two runs shared a noisy
machine; alternate A and B runs and compare medians when it matters.
"""
import argparse
import json
import sys

STATS = ["p(50)", "p(95)", "p(99)", "max"]


def load(path):
    with open(path) as f:
        data = json.load(f)
    if "metrics" not in data:
        sys.exit(f"{path}: not a k6 summary (no 'metrics'); use the NAME.json that load/summary.js writes")
    return data


def headline(data):
    m = data["metrics"]
    seconds = data.get("state", {}).get("testRunDurationMs", 0) / 1000
    reqs = m.get("http_reqs", {}).get("values", {}).get("count", 0)
    return {
        "requests/s": reqs / seconds if seconds else 0.0,
        "requests": reqs,
        "failed %": 100 * m.get("http_req_failed", {}).get("values", {}).get("rate", 0),
        "dropped iterations": m.get("dropped_iterations", {}).get("values", {}).get("count", 0),
    }


def ratio(a, b):
    return f"{b / a:.3f}" if a else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--fail-above", type=float, metavar="PCT",
                    help="exit 1 when B's requests/s is lower, or any p99 higher, by more than PCT percent")
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)
    worse = []
    print(f"{'':56}{'A':>12}{'B':>12}{'B/A':>8}")
    ha, hb = headline(a), headline(b)
    for key in ha:
        print(f"{key:56}{ha[key]:>12.1f}{hb[key]:>12.1f}{ratio(ha[key], hb[key]):>8}")
    if args.fail_above is not None and ha["requests/s"] and hb["requests/s"] < ha["requests/s"] * (1 - args.fail_above / 100):
        worse.append("requests/s")
    series = sorted(n for n in set(a["metrics"]) | set(b["metrics"]) if n.startswith("http_req_duration"))
    for name in series:
        va = a["metrics"].get(name, {}).get("values", {})
        vb = b["metrics"].get(name, {}).get("values", {})
        for stat in STATS:
            x, y = va.get(stat), vb.get(stat)
            if x is None or y is None:
                continue
            print(f"{(name + ' ' + stat + ' ms'):56}{x:>12.2f}{y:>12.2f}{ratio(x, y):>8}")
            if stat == "p(99)" and args.fail_above is not None and y > x * (1 + args.fail_above / 100):
                worse.append(f"{name} p(99)")
    if worse:
        print(f"\nworse by more than {args.fail_above} %: {', '.join(worse)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
