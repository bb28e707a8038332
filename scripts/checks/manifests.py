"""The Kubernetes manifests' settings that must agree with the services:
probes on /health/live and /health/ready, a preStop sleep and a grace period
above it plus SHUTDOWN_GRACE_SECONDS, a locked-down security context, 3
replicas on port 3000, no WORKER_ID; API keys required, one trusted proxy hop,
no CORS *, none of them overridden per container; and the one-off Jobs
migrate-job.yaml (`migrate`) and clients-job.example.yaml (`clients add ...
--key-sha256`), run once, as the migration user, like the Deployments
otherwise. Run by scripts/check-deploy.sh with the venv's Python, from the
repository root.
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
job_env = None
for name in ("clients-job.example.yaml", "migrate-job.yaml"):
    job = yaml.safe_load(open(f"deploy/k8s/{name}"))
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    args = c.get("args", [])
    if name.startswith("clients") and (args[:2] != ["clients", "add"] or "--role" not in args or "--key-sha256" not in args):
        problems.append(f"{name}: must run `clients add NAME --role ROLE --key-sha256 HEX`")
    if job["kind"] != "Job" or spec["restartPolicy"] != "Never" or "backoffLimit" not in job["spec"] \
            or "ttlSecondsAfterFinished" not in job["spec"]:
        problems.append(f"{name}: a Job with restartPolicy Never, backoffLimit and ttlSecondsAfterFinished")
    if not c["image"].startswith("REGISTRY/kube-credential-issuance:"):
        problems.append(f"{name}: must run the issuance image")
    if not locked_down(c) or spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: container securityContext is not locked down")
    same_environment(name, c)
    if job_env is not None and c["env"] != job_env:
        problems.append(f"{name}: env (the migration user's Secret) differs from the other Job's")
    job_env = c["env"]
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
