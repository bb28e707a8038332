"""What cfn-lint cannot see across the CloudFormation stacks: every
Fn::ImportValue is exported by a stack created before it, and the numbers that
must agree do (ECR lifecycle, ECS stop timeout vs the shutdown grace, health
check, secrets), and access control: both task definitions require API keys,
trust one proxy hop, never allow CORS *, and a WAF rate rule guards the ALB. Run by scripts/check-deploy.sh with the venv's Python, from
the repository root: python stacks_chain.py vpc security-groups ... (in order).
"""
import json, re, sys
from cfn import load

def walk(node):
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)

def export_name(value):
    """'${EnvironmentName}-X' (plain or Fn::Sub) -> 'X'."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
    m = re.fullmatch(r"\$\{EnvironmentName\}-(\w+)", value) if isinstance(value, str) else None
    if not m:
        sys.exit(f"export/import name not of the form ${{EnvironmentName}}-Name: {value!r}")
    return m.group(1)

exported, problems = {}, []
for name in sys.argv[1:]:
    t = load(name)
    if t.get("Parameters", {}).get("EnvironmentName", {}).get("Default") != "kube-credential":
        problems.append(f"{name}.yml: no EnvironmentName parameter defaulting to kube-credential")
    for node in walk(t.get("Resources", {})):
        if isinstance(node, dict) and "Fn::ImportValue" in node:
            imp = export_name(node["Fn::ImportValue"])
            if imp not in exported:
                problems.append(f"{name}.yml imports {imp}, which no earlier stack exports")
    for out in t.get("Outputs", {}).values():
        if "Export" in out:
            exported[export_name(out["Export"]["Name"])] = name
    print(f"{name}.yml: {len(exported)} exports so far")

ecr = load("ecr")
for repo in ("IssuanceRepository", "VerificationRepository"):
    text = ecr["Resources"][repo]["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"]
    rules = json.loads(text.replace("${ImagesToKeep}", "20"))["rules"]
    if rules[-1]["selection"] != {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20}:
        problems.append(f"ecr.yml {repo}: the last lifecycle rule does not keep 20 images")

def env_entries(entries):
    """Environment entries, those under Fn::If [cond, entry, AWS::NoValue] too."""
    for e in entries:
        if "Fn::If" in e:
            yield from (b for b in e["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
        else:
            yield e

ecs = load("ecs")
cors = ecs["Parameters"]["CorsAllowedOrigins"]
if cors.get("Default") != "" or re.fullmatch(cors.get("AllowedPattern", ".*"), "*"):
    problems.append("ecs.yml CorsAllowedOrigins: must default to empty and refuse *")
for td in ("IssuanceTaskDefinition", "VerificationTaskDefinition"):
    c = ecs["Resources"][td]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in env_entries(c["Environment"])}
    if env.get("AUTH_MODE") != "required":
        problems.append(f"ecs.yml {td}: AUTH_MODE must be set to required")
    if env.get("TRUSTED_PROXY_HOPS") != "1":
        problems.append(f"ecs.yml {td}: TRUSTED_PROXY_HOPS must be 1 (the ALB)")
    if env.get("CORS_ALLOWED_ORIGINS", {"Ref": "CorsAllowedOrigins"}) != {"Ref": "CorsAllowedOrigins"}:
        problems.append(f"ecs.yml {td}: CORS_ALLOWED_ORIGINS must come from the CorsAllowedOrigins parameter")
    for var in ("CLIENT_RATE_LIMIT", "ANONYMOUS_RATE_LIMIT"):
        if var not in env:
            problems.append(f"ecs.yml {td}: {var} is not set")
    grace = int(env["SHUTDOWN_GRACE_SECONDS"])
    if not c["StopTimeout"] > grace:
        problems.append(f"ecs.yml {td}: StopTimeout {c['StopTimeout']} is not above SHUTDOWN_GRACE_SECONDS {grace}")
    if c["HealthCheck"]["Command"] != ["CMD", "/app/service", "healthcheck"]:
        problems.append(f"ecs.yml {td}: unexpected container health check")
    if "WORKER_ID" in env:
        problems.append(f"ecs.yml {td}: WORKER_ID must stay unset (the hostname names the task)")
    secrets = {s["Name"] for s in c["Secrets"]}
    if secrets != {"RDS_CLUSTER_USERNAME", "RDS_CLUSTER_PASSWORD"} or "RDS_CLUSTER_PASSWORD" in env:
        problems.append(f"ecs.yml {td}: the database credentials must come from Secrets only")

alb = load("alb")
res = alb["Resources"]
if alb["Parameters"].get("EnableWaf", {}).get("Default") != "true":
    problems.append("alb.yml: EnableWaf must default to true")
acl = res.get("WebAcl", {"Properties": {}})["Properties"]
per_ip = [r for r in acl.get("Rules", []) if "Block" in r["Action"]
          and r["Statement"].get("RateBasedStatement", {}).get("AggregateKeyType") == "IP"]
if acl.get("Scope") != "REGIONAL" or not per_ip:
    problems.append("alb.yml: no REGIONAL WebAcl with a blocking rate-based rule per IP")
assoc = [r["Properties"] for r in res.values() if r["Type"] == "AWS::WAFv2::WebACLAssociation"]
if assoc != [{"ResourceArn": {"Ref": "LoadBalancer"}, "WebACLArn": {"Fn::GetAtt": ["WebAcl", "Arn"]}}]:
    problems.append("alb.yml: the WebAcl is not associated with the LoadBalancer")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
