"""deploy/k8s/kustomization.yaml lists every manifest given as arguments, and
each listed one exists. Run by scripts/check-deploy.sh with the venv's Python,
from the repository root.
"""
import sys, yaml
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
listed = {"deploy/k8s/" + r for r in k["resources"]}
present = set(sys.argv[1:])
for r in sorted(listed - present):
    print(f"listed but missing: {r}")
for r in sorted(present - listed):
    print(f"not listed: {r}")
sys.exit(1 if listed != present else 0)
