"""deploy/grafana/kube-credential.json: well formed, and every panel's query is
PromQL that promtool accepts once Grafana's variables are filled in.

Usage: dashboard.py DASHBOARD PROMTOOL WORKDIR. Run by scripts/check-deploy.sh
with the venv's Python, from the repository root. Whether the series the
queries name are ones a task exposes is checked by a Rust test against a
running task (issuance/tests/http.rs).
"""
import json
import subprocess
import sys

dashboard, promtool, work = sys.argv[1:4]
d = json.load(open(dashboard))
problems = []
ids = [p.get("id") for p in d["panels"]]
if len(set(ids)) != len(ids):
    problems.append(f"panel ids repeat: {ids}")
variables = {v["name"] for v in d["templating"]["list"]}
rules = []
for p in d["panels"]:
    if p["type"] == "row":
        continue
    if not p.get("description"):
        problems.append(f"panel {p['title']!r} has no description")
    if not p.get("targets"):
        problems.append(f"panel {p['title']!r} has no query")
    for t in p.get("targets", []):
        expr = t["expr"]
        for name in ("job", "instance"):
            if f"${name}" in expr and name not in variables:
                problems.append(f"{p['title']!r} uses ${name}, which is not a variable")
        # Grafana's variables as Grafana would expand them ("All" is .*).
        expr = expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")
        rules.append({"record": f"panel_{p['id']}_{t['refId']}", "expr": expr})
path = f"{work}/dashboard-rules.json"
# promtool reads YAML, and JSON is YAML.
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(path, "w"))
out = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
if out.returncode != 0:
    problems.append("promtool check rules:\n" + out.stdout + out.stderr)
for problem in problems:
    print(problem)
print(f"{len(rules)} queries in {len(d['panels'])} panels")
sys.exit(1 if problems else 0)
