"""deploy/k8s/kustomization.yaml lists every manifest given as arguments, and
each listed one exists; those after --one-off (applied by hand, once) are not
listed. Run by scripts/check-deploy.sh with the venv's Python, from the
repository root: python kustomization.py MANIFEST... --one-off MANIFEST...
"""
import sys, yaml
k = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
listed = {"deploy/k8s/" + r for r in k["resources"]}
args = sys.argv[1:] + ["--one-off"]
cut = args.index("--one-off")
present, one_offs = set(args[:cut]), set(args[cut + 1:-1])
for r in sorted(listed - present):
    print(f"listed but missing: {r}")
for r in sorted(present - listed):
    print(f"not listed: {r}")
for r in sorted(listed & one_offs):
    print(f"a one-off, must not be listed: {r}")
sys.exit(1 if listed != present or listed & one_offs else 0)
