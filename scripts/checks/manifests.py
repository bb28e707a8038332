"""The Kubernetes manifests' settings that must agree with the services:
probes on /health/live and /health/ready, a preStop sleep and a grace period
above it plus SHUTDOWN_GRACE_SECONDS, a locked-down security context, 3
replicas on port 3000, no WORKER_ID. Run by scripts/check-deploy.sh with the
venv's Python, from the repository root.
"""
import sys, yaml
cm = yaml.safe_load(open("deploy/k8s/configmap.yaml"))["data"]
grace = int(cm["SHUTDOWN_GRACE_SECONDS"])
problems = []
if "WORKER_ID" in cm:
    problems.append("configmap: WORKER_ID must stay unset (the pod name names the worker)")
for svc in ("issuance", "verification"):
    d = yaml.safe_load(open(f"deploy/k8s/{svc}-deployment.yaml"))
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    if spec["terminationGracePeriodSeconds"] <= pause + grace:
        problems.append(f"{svc}: terminationGracePeriodSeconds is not above preStop {pause} + grace {grace}")
    if c["livenessProbe"]["httpGet"]["path"] != "/health/live" or c["readinessProbe"]["httpGet"]["path"] != "/health/ready":
        problems.append(f"{svc}: probes must use /health/live and /health/ready")
    sc = c["securityContext"]
    if not (sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["runAsUser"] == 65532
            and sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False):
        problems.append(f"{svc}: container securityContext is not locked down")
    if d["spec"]["replicas"] != 3 or c["ports"][0]["containerPort"] != 3000:
        problems.append(f"{svc}: expected 3 replicas on port 3000")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
