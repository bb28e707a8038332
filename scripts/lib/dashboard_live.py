"""Runs every query of the Grafana dashboard against a Prometheus that scrapes
the twin (scripts/up.sh WITH_PROMETHEUS=1) and fails unless each one returns
series for every service it selects: the panels a person opens will not be
empty. Grafana's variables are filled in as "All" would ($job and $instance
match everything, $__rate_interval is 1m).

    python3 scripts/lib/dashboard_live.py DASHBOARD PROMETHEUS_URL [MIN_TASKS]

MIN_TASKS (default 1): the least number of distinct tasks (instance labels) a
per-task query must return.
"""
import json
import sys
import urllib.parse
import urllib.request


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def main():
    dashboard, base = sys.argv[1], sys.argv[2].rstrip("/")
    min_tasks = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    d = json.load(open(dashboard))
    empty, checked = [], 0
    for panel in d["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "1m")
                    .replace("$job", ".*").replace("$instance", ".*"))
            result = query(base, expr)
            checked += 1
            tasks = {s["metric"].get("instance") for s in result if "instance" in s["metric"]}
            per_task = "instance" in target.get("legendFormat", "")
            ok = bool(result) and (not per_task or len(tasks) >= min_tasks)
            print(f"{'ok  ' if ok else 'EMPTY'} {len(result):3d} series {len(tasks):2d} tasks  {panel['title']}: {target['legendFormat']}")
            if not ok:
                empty.append(f"{panel['title']} ({target['refId']})")
    print(f"{checked} queries, {len(empty)} without the series they should have")
    if empty:
        print("empty: " + ", ".join(empty))
    return 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main())
