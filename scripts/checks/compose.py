"""docker-compose.yml's services built from the project's images require API
keys (AUTH_MODE=required), trust one proxy hop (nginx in front) and never
allow CORS *. Run by scripts/check-deploy.sh with the venv's Python, from the
repository root.
"""
import sys, yaml
services = yaml.safe_load(open("docker-compose.yml"))["services"]
problems = []
for name, svc in services.items():
    if not str(svc.get("image", "")).startswith("kube-credential-"):
        continue
    env = svc.get("environment", {})
    if env.get("AUTH_MODE") != "required" or env.get("TRUSTED_PROXY_HOPS") != "1":
        problems.append(f"{name}: AUTH_MODE must be required and TRUSTED_PROXY_HOPS 1")
    if "*" in env.get("CORS_ALLOWED_ORIGINS", ""):
        problems.append(f"{name}: CORS_ALLOWED_ORIGINS must never be *")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
