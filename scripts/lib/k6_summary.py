"""Prints counts from a k6 --summary-export file on one line, in the order
asked: for a counter its count, for a rate its number of true values (for
http_req_failed: the failed requests). 0 for a metric the run never emitted.

    python3 scripts/lib/k6_summary.py summary.json http_reqs http_req_failed issued_201
"""

import json
import sys


def value(metrics, name):
    m = metrics.get(name, {})
    if "count" in m:
        return int(m["count"])
    return int(m.get("passes", 0))


def main():
    with open(sys.argv[1]) as f:
        metrics = json.load(f).get("metrics", {})
    print(" ".join(str(value(metrics, name)) for name in sys.argv[2:]))


if __name__ == "__main__":
    main()
