"""Prints values from a k6 --summary-export file on one line, in the order
asked: for a counter its count, for a rate its number of true values (for
http_req_failed: the failed requests), and METRIC/STAT for one statistic
(e.g. http_req_duration/p(99) in ms, checks/fails). 0 for a metric the run
never emitted. Sub-metrics are named as k6 names them: http_reqs{phase:measure}.

    python3 scripts/lib/k6_summary.py summary.json http_reqs http_req_failed 'http_req_duration/p(99)'
"""

import json
import sys


def value(metrics, name):
    name, _, stat = name.partition("/")
    m = metrics.get(name, {})
    if stat:
        return f"{float(m.get(stat, 0)):.2f}"
    if "count" in m:
        return str(int(m["count"]))
    return str(int(m.get("passes", 0)))


def main():
    with open(sys.argv[1]) as f:
        metrics = json.load(f).get("metrics", {})
    print(" ".join(value(metrics, name) for name in sys.argv[2:]))


if __name__ == "__main__":
    main()
