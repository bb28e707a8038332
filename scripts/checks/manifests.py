"""The Kubernetes manifests' settings that must agree with the services:
probes on /health/live and /health/ready, a preStop sleep and a grace period
above it plus SHUTDOWN_GRACE_SECONDS, a locked-down security context, 3
replicas on port 3000, no WORKER_ID; API keys required, one trusted proxy hop,
no CORS *, none of them overridden per container. Run by scripts/check-deploy.sh
with the venv's Python, from the repository root.
"""
import sys, yaml
cm = yaml.safe_load(open("deploy/k8s/configmap.yaml"))["data"]
grace = int(cm["SHUTDOWN_GRACE_SECONDS"])
problems = []
if "WORKER_ID" in cm:
    problems.append("configmap: WORKER_ID must stay unset (the pod name names the worker)")
if cm.get("AUTH_MODE") != "required" or cm.get("TRUSTED_PROXY_HOPS") != "1":
    problems.append("configmap: AUTH_MODE must be required and TRUSTED_PROXY_HOPS 1")
if "*" in cm.get("CORS_ALLOWED_ORIGINS", ""):
    problems.append("configmap: CORS_ALLOWED_ORIGINS must never be *")

def locked_down(c):
    sc = c["securityContext"]
    return (sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["runAsUser"] == 65532
            and sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False)

def same_environment(name, c):
    """The ConfigMap whole, nothing of access control overridden."""
    if c["envFrom"] != [{"configMapRef": {"name": "kube-credential-config"}}]:
        problems.append(f"{name}: envFrom must be the ConfigMap kube-credential-config")
    overridden = {e["name"] for e in c.get("env", [])} & {"AUTH_MODE", "TRUSTED_PROXY_HOPS", "CORS_ALLOWED_ORIGINS"}
    if overridden:
        problems.append(f"{name}: {sorted(overridden)} must come from the ConfigMap only")

for svc in ("issuance", "verification"):
    d = yaml.safe_load(open(f"deploy/k8s/{svc}-deployment.yaml"))
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    same_environment(svc, c)
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    if spec["terminationGracePeriodSeconds"] <= pause + grace:
        problems.append(f"{svc}: terminationGracePeriodSeconds is not above preStop {pause} + grace {grace}")
    if c["livenessProbe"]["httpGet"]["path"] != "/health/live" or c["readinessProbe"]["httpGet"]["path"] != "/health/ready":
        problems.append(f"{svc}: probes must use /health/live and /health/ready")
    if not locked_down(c):
        problems.append(f"{svc}: container securityContext is not locked down")
    if d["spec"]["replicas"] != 3 or c["ports"][0]["containerPort"] != 3000:
        problems.append(f"{svc}: expected 3 replicas on port 3000")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
