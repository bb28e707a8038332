"""The production hardening of issue 21 that lint and schemas cannot see, one
check per change, each run on its own by scripts/check-deploy.sh (with the
venv's Python, from the repository root): python hardening.py CHECK.

  https-only        alb.yml: a certificate required unless AllowPlainHttp=true,
                    port 80 redirects to 443 with one, serves the API only without
  access-logs       alb.yml: access logs to a private S3 bucket of the stack, on by default
  db-roles          the services log in as their own users (kc_issuance,
                    kc_verification) and never migrate; a one-off migration
                    task/Job as the migration user; sql/004_roles.sql grants
  rds               managed and rotated master password, storage autoscaling,
                    deletion protection and 7-day backups by default, private subnets
  private-subnets   tasks in private subnets when vpc.yml's PrivateEgress allows
  immutable-images  immutable ECR tags, commits (or digests) only, never latest
  base-images       the Dockerfile's and compose's images pinned by digest
  rds-bundle        the RDS CA bundle checked against a pinned SHA-256
  ingress-tls       the Kubernetes ingress: TLS, HTTP redirected to HTTPS
  network-policy    only the ingress controller and Prometheus reach the pods
  kustomization     no Secret (nor the example) in what kubectl apply -k applies
  db-tier           rds.yml's RDS Proxy and read replica off by default; the
                    services take RDS_CLUSTER_HOST and DB_POOLER from its exports,
                    the migration task the instance itself; only verification
                    gets DATABASE_READ_URL, and only with ReadFromReplica (issue 20)
"""
import re, sys
import yaml
from cfn import load as cfn

def k8s(name):
    with open(f"deploy/k8s/{name}") as f:
        return [d for d in yaml.safe_load_all(f) if d]

def imports(node):
    """The export names (after ${EnvironmentName}-) an ImportValue node reads."""
    if isinstance(node, dict) and "Fn::ImportValue" in node:
        v = node["Fn::ImportValue"]
        v = v.get("Fn::Sub", v) if isinstance(v, dict) else v
        return [v.replace("${EnvironmentName}-", "")]
    if isinstance(node, dict) and "Fn::Sub" in node and isinstance(node["Fn::Sub"], list):
        return [i for v in node["Fn::Sub"][1].values() for i in imports(v)]
    return []

problems = []
def need(ok, message):
    if not ok:
        problems.append(message)

def https_only():
    alb = cfn("alb")
    p, res = alb["Parameters"], alb["Resources"]
    need(p["AllowPlainHttp"].get("Default") == "false", "AllowPlainHttp must default to false")
    need("clear text" in p["AllowPlainHttp"].get("Description", ""), "AllowPlainHttp must say what plain HTTP costs")
    rule = alb.get("Rules", {}).get("CertificateOrExplicitPlainHttp", {})
    need(rule.get("RuleCondition") == {"Fn::Equals": [{"Ref": "AllowPlainHttp"}, "false"]}
         and {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]} in [a["Assert"] for a in rule.get("Assertions", [])],
         "no Rule requiring CertificateArn unless AllowPlainHttp=true")
    action = res["HttpListener"]["Properties"]["DefaultActions"][0].get("Fn::If", [None, {}, {}])
    need(action[0] == "HasCertificate" and action[1].get("Type") == "redirect"
         and action[1]["RedirectConfig"] == {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
         "HttpListener: with a certificate its default action must be a 301 redirect to HTTPS 443")
    for name, r in res.items():
        if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule" and r["Properties"]["ListenerArn"] == {"Ref": "HttpListener"}:
            need(r.get("Condition") == "PlainHttp", f"{name}: forwards on port 80 unless Condition PlainHttp")
    need(alb["Conditions"]["PlainHttp"] == {"Fn::Not": [{"Condition": "HasCertificate"}]}, "PlainHttp must mean: no certificate")
    https = res["HttpsListener"]["Properties"]
    need(https["Protocol"] == "HTTPS" and https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13"), "HttpsListener: HTTPS with a TLS 1.3 policy")

def access_logs():
    alb = cfn("alb")
    res = alb["Resources"]
    need(alb["Parameters"]["AccessLogs"].get("Default") == "true", "AccessLogs must default to true")
    attrs = res["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    flat = [a["Fn::If"][1] if "Fn::If" in a else a for a in attrs]
    keys = {a["Key"]: a["Value"] for a in flat}
    need(keys.get("access_logs.s3.enabled") == {"Ref": "AccessLogs"}, "LoadBalancer: access_logs.s3.enabled must follow AccessLogs")
    need(keys.get("access_logs.s3.bucket") == {"Ref": "AccessLogsBucket"}, "LoadBalancer: access_logs.s3.bucket must be AccessLogsBucket")
    bucket = res.get("AccessLogsBucket", {}).get("Properties", {})
    need(all(bucket.get("PublicAccessBlockConfiguration", {}).values()) and len(bucket.get("PublicAccessBlockConfiguration", {})) == 4,
         "AccessLogsBucket: all public access must be blocked")
    need(bucket.get("LifecycleConfiguration", {}).get("Rules", [{}])[0].get("ExpirationInDays") == {"Ref": "AccessLogRetentionDays"},
         "AccessLogsBucket: logs must expire after AccessLogRetentionDays")
    policy = res.get("AccessLogsBucketPolicy", {}).get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
    need(any(s.get("Action") == "s3:PutObject" and s["Effect"] == "Allow" for s in policy),
         "AccessLogsBucketPolicy: ELB log delivery may not write")

def container(template, resource):
    return template["Resources"][resource]["Properties"]["ContainerDefinitions"][0]

def env_of(c):
    return {e["Name"]: e["Value"] for e in c.get("Environment", []) if "Name" in e}

def secret_exports(c):
    return {i for s in c.get("Secrets", []) for i in imports(s["ValueFrom"])}

def db_roles():
    ecs = cfn("ecs")
    res = ecs["Resources"]
    for td, export, role in (("IssuanceTaskDefinition", "IssuanceSecretArn", "IssuanceExecutionRole"),
                             ("VerificationTaskDefinition", "VerificationSecretArn", "VerificationExecutionRole")):
        c = container(ecs, td)
        need(secret_exports(c) == {export}, f"ecs.yml {td}: the database user must come from {export} only")
        need(env_of(c).get("RUN_MIGRATIONS") == "false", f"ecs.yml {td}: RUN_MIGRATIONS must be false")
        need(res[td]["Properties"]["ExecutionRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}, f"ecs.yml {td}: execution role must be {role}")
        reads = [i for p in res[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
                 if s["Action"] == "secretsmanager:GetSecretValue" for i in imports(s["Resource"])]
        need(reads == [export], f"ecs.yml {role}: must read {export} and no other secret")
    m = container(ecs, "MigrateTaskDefinition")
    need(m.get("Command") == ["migrate"] and secret_exports(m) == {"MasterSecretArn"},
         "ecs.yml MigrateTaskDefinition: `migrate` as the master user (MasterSecretArn)")
    sql = open("sql/004_roles.sql").read()
    need('("004_roles", include_str!("../../sql/004_roles.sql"))' in open("core/src/migrate.rs").read(),
         "sql/004_roles.sql is not registered in core/src/migrate.rs")
    grants = re.findall(r"^\s*GRANT (.+?) ON (?:FUNCTION )?(.+?) TO (.+?);", sql, re.M)
    for privileges, _, grantees in grants:
        if "kc_verification" in grantees:
            need(privileges in ("SELECT", "USAGE"), f"004_roles.sql grants {privileges} to kc_verification")
        if "kc_issuance" in grantees:
            need(set(re.split(r",\s*", privileges)) <= {"SELECT", "INSERT", "USAGE", "EXECUTE"},
                 f"004_roles.sql grants {privileges} to kc_issuance")
    need(not re.search(r"ALTER DEFAULT PRIVILEGES", sql), "004_roles.sql: no default privileges (each migration grants)")
    # Revocation: the issuance role may UPDATE the two revocation columns, and nothing else.
    lifecycle = open("sql/005_lifecycle.sql").read()
    need('("005_lifecycle", include_str!("../../sql/005_lifecycle.sql"))' in open("core/src/migrate.rs").read(),
         "sql/005_lifecycle.sql is not registered in core/src/migrate.rs")
    for privileges, _, grantees in re.findall(r"^\s*GRANT (.+?) ON (?:FUNCTION )?(.+?) TO (.+?);", lifecycle, re.M):
        need(grantees.strip() == "kc_issuance" and privileges.strip() == "UPDATE (revoked_at, revocation_reason)",
             f"005_lifecycle.sql grants {privileges} to {grantees}")
    cm = k8s("configmap.yaml")[0]["data"]
    need(cm.get("RUN_MIGRATIONS") == "false", "configmap: RUN_MIGRATIONS must be false")
    def secret_names(doc):
        c = doc["spec"]["template"]["spec"]["containers"][0]
        return {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "valueFrom" in e}
    for svc in ("issuance", "verification"):
        need(secret_names(k8s(f"{svc}-deployment.yaml")[0]) == {f"kube-credential-db-{svc}"},
             f"{svc}-deployment: must log in with the Secret kube-credential-db-{svc} only")
    for job, args in (("migrate-job.yaml", ["migrate"]), ("clients-job.example.yaml", None)):
        doc = k8s(job)[0]
        need(secret_names(doc) == {"kube-credential-db-migrator"}, f"{job}: must log in as the migration user")
        if args:
            need(doc["kind"] == "Job" and doc["spec"]["template"]["spec"]["containers"][0].get("args") == args,
                 f"{job}: must be a Job running {args}")

def rds():
    t = cfn("rds")
    p, db = t["Parameters"], t["Resources"]["Database"]["Properties"]
    need(db.get("ManageMasterUserPassword") is True and "MasterUserPassword" not in db,
         "rds.yml: the master password must be managed (and rotated) by RDS in Secrets Manager")
    need(t["Outputs"]["MasterSecretArn"]["Value"] == {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]},
         "rds.yml: MasterSecretArn must be the RDS-managed secret")
    need(db.get("MaxAllocatedStorage") == {"Ref": "MaxAllocatedStorage"}
         and p["MaxAllocatedStorage"]["Default"] > p["AllocatedStorage"]["Default"], "rds.yml: storage autoscaling must be on")
    need(p["DeletionProtection"]["Default"] == "true" and db["DeletionProtection"] == {"Ref": "DeletionProtection"},
         "rds.yml: deletion protection must be on by default")
    need(p["BackupRetentionPeriod"]["Default"] >= 7 and db["BackupRetentionPeriod"] == {"Ref": "BackupRetentionPeriod"},
         "rds.yml: backups must be kept 7 days by default")
    subnets = t["Resources"]["DatabaseSubnetGroup"]["Properties"]["SubnetIds"]
    need([i for s in subnets for i in imports(s)] == ["PrivateSubnet1", "PrivateSubnet2"], "rds.yml: the database must be in the private subnets")
    need(db.get("PubliclyAccessible") is False and db.get("StorageEncrypted") is True, "rds.yml: private and encrypted")

def private_subnets():
    vpc, ecs = cfn("vpc"), cfn("ecs")
    out = vpc["Outputs"]
    need(out["TaskSubnet1"]["Value"] == {"Fn::If": ["TasksInPrivateSubnets", {"Ref": "PrivateSubnet1"}, {"Ref": "PublicSubnet1"}]}
         and out["TaskAssignPublicIp"]["Value"] == {"Fn::If": ["TasksInPrivateSubnets", "DISABLED", "ENABLED"]},
         "vpc.yml: the task subnets must be the private ones when PrivateEgress allows")
    need(vpc["Conditions"]["TasksInPrivateSubnets"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PrivateEgress"}, "none"]}]},
         "vpc.yml: TasksInPrivateSubnets must follow PrivateEgress")
    res = vpc["Resources"]
    need(res.get("NatGateway", {}).get("Condition") == "UseNatGateway"
         and res.get("PrivateDefaultRoute", {}).get("Condition") == "UseNatGateway", "vpc.yml: a NAT gateway for PrivateEgress=nat-gateway")
    services = {r["Properties"]["ServiceName"]["Fn::Sub"].split("${AWS::Region}.")[-1] for r in res.values()
                if r["Type"] == "AWS::EC2::VPCEndpoint" and r.get("Condition") == "UseVpcEndpoints"}
    need(services >= {"s3", "ecr.api", "ecr.dkr", "logs", "secretsmanager"},
         f"vpc.yml: PrivateEgress=vpc-endpoints lacks endpoints: {services}")
    need("$" in vpc["Parameters"]["PrivateEgress"]["Description"], "vpc.yml: PrivateEgress must say what NAT and endpoints cost")
    for svc in ("IssuanceService", "VerificationService"):
        net = ecs["Resources"][svc]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        need([i for s in net["Subnets"] for i in imports(s)] == ["TaskSubnet1", "TaskSubnet2"]
             and imports(net["AssignPublicIp"]) == ["TaskAssignPublicIp"],
             f"ecs.yml {svc}: subnets and public IP must be the VPC stack's task choice")

COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
def immutable_images():
    ecr = cfn("ecr")
    for repo in ("IssuanceRepository", "VerificationRepository"):
        need(ecr["Resources"][repo]["Properties"]["ImageTagMutability"] == "IMMUTABLE", f"ecr.yml {repo}: tags must be IMMUTABLE")
    ecs = cfn("ecs")
    for param in ("IssuanceImageTag", "VerificationImageTag", "MigrateImageTag"):
        p = ecs["Parameters"][param]
        pattern = p.get("AllowedPattern", ".*")
        need("Default" not in p and not re.fullmatch(pattern, "latest") and re.fullmatch(pattern, "abc1234"),
             f"ecs.yml {param}: no default, a git commit only, never latest")
    for td in ("IssuanceTaskDefinition", "VerificationTaskDefinition", "MigrateTaskDefinition"):
        image = container(ecs, td)["Image"]["Fn::Sub"][0]
        need(re.fullmatch(r"\$\{RepositoryUri\}:\$\{\w+ImageTag\}", image), f"ecs.yml {td}: image must be the repository at a tag parameter")
    kust = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
    for img in kust.get("images", []):
        tag = img.get("newTag", "")
        need(tag == "TAG" or COMMIT.match(tag) or re.fullmatch(r"sha256:[0-9a-f]{64}", img.get("digest", "")),
             f"kustomization.yaml {img['name']}: a commit or a digest (or the TAG placeholder), never {tag!r}")
    for f in ("issuance-deployment.yaml", "verification-deployment.yaml", "migrate-job.yaml", "clients-job.example.yaml"):
        for c in k8s(f)[0]["spec"]["template"]["spec"]["containers"]:
            need(not c["image"].endswith(":latest") and ":" in c["image"].split("/")[-1], f"{f}: image {c['image']} must have a tag, never latest")
    push = open("scripts/push_image.sh").read()
    need(":latest" not in push and "^[0-9a-f]{7,40}$" in push, "push_image.sh: must push a commit tag only, never latest")

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
def base_images():
    froms = re.findall(r"^FROM\s+(\S+)", open("Dockerfile").read(), re.M)
    for image in froms:
        need(image == "scratch" or DIGEST.search(image), f"Dockerfile: FROM {image} is not pinned by digest")
    need(len(froms) >= 2, "Dockerfile: expected a build stage and a scratch stage")
    for name, svc in yaml.safe_load(open("docker-compose.yml"))["services"].items():
        image = str(svc.get("image", ""))
        if "build" not in svc:
            need(DIGEST.search(image), f"docker-compose.yml {name}: {image} is not pinned by digest")

def rds_bundle():
    text = open("Dockerfile").read().replace("\\\n", " ")
    adds = [l for l in text.splitlines() if l.startswith("ADD ") and "truststore.pki.rds.amazonaws.com" in l]
    need(len(adds) == 1 and re.search(r"--checksum=sha256:[0-9a-f]{64}\s", adds[0]),
         "Dockerfile: the RDS bundle must be ADDed with --checksum=sha256:<64 hex>")
    need(text.startswith("# syntax=docker/dockerfile:1\n"), "Dockerfile: ADD --checksum needs the dockerfile:1 syntax (1.6 or later)")

def ingress_tls():
    ing = k8s("ingress.yaml")[0]
    a, spec = ing["metadata"]["annotations"], ing["spec"]
    hosts = [h for t in spec.get("tls", []) for h in t.get("hosts", [])]
    need(hosts and all(r.get("host") in hosts for r in spec["rules"]), "ingress: every rule's host must be in spec.tls")
    need(a.get("alb.ingress.kubernetes.io/ssl-redirect") == "443"
         and '{"HTTPS": 443}' in a.get("alb.ingress.kubernetes.io/listen-ports", ""),
         "ingress: the ALB must listen on HTTPS 443 and redirect HTTP to it")
    need(a.get("alb.ingress.kubernetes.io/ssl-policy", "").startswith("ELBSecurityPolicy-TLS13"), "ingress: a TLS 1.3 policy")
    need(a.get("nginx.ingress.kubernetes.io/force-ssl-redirect") == "true", "ingress: nginx must redirect HTTP to HTTPS")

def network_policy():
    docs = k8s("networkpolicy.yaml")
    deny = [d for d in docs if d["spec"]["podSelector"] == {} and d["spec"]["policyTypes"] == ["Ingress"] and not d["spec"].get("ingress")]
    need(deny, "networkpolicy: no default deny of ingress for the namespace")
    ports = {}
    for d in docs:
        for rule in d["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                ports.setdefault(port["port"], []).extend(rule["from"])
    need(set(ports) == {"http", "metrics"}, f"networkpolicy: only the ports http and metrics may be admitted (got {sorted(ports)})")
    sources = ports.get("http", [])
    need(any(s.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "ingress-nginx" for s in sources)
         and all("namespaceSelector" in s or "ipBlock" in s for s in sources) and not any("podSelector" in s and "namespaceSelector" not in s for s in sources),
         "networkpolicy: http only from the ingress controller (its namespace, or the ALB's subnets)")
    prom = ports.get("metrics", [])
    need(prom and all(s.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "prometheus"
                      and "namespaceSelector" in s for s in prom), "networkpolicy: metrics only from Prometheus")
    for d in docs:
        need("0.0.0.0/0" not in str(d), f"networkpolicy {d['metadata']['name']}: admits the whole internet")

def kustomization():
    kust = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
    for r in kust["resources"]:
        for d in k8s(r):
            need(d["kind"] != "Secret", f"kustomization.yaml: {r} holds a Secret")
    need("secret.example.yaml" not in kust["resources"], "kustomization.yaml must not list secret.example.yaml")
    need("networkpolicy.yaml" in kust["resources"], "kustomization.yaml must list networkpolicy.yaml")
    need(not kust.get("secretGenerator"), "kustomization.yaml: no secretGenerator")

def task_env(t, resource):
    return {e["Name"] if "Name" in e else e["Fn::If"][1]["Name"]: e
            for e in t["Resources"][resource]["Properties"]["ContainerDefinitions"][0]["Environment"]}

def db_tier():
    rds, ecs = cfn("rds"), cfn("ecs")
    p = rds["Parameters"]
    need(p["ConnectionPooler"]["Default"] == "none" and p["ReadReplica"]["Default"] == "false",
         "rds.yml: the RDS Proxy and the read replica must be off by default")
    for name in ("ProxyRole", "DatabaseProxy", "DatabaseProxyTargetGroup"):
        need(rds["Resources"][name].get("Condition") == "HasProxy", f"rds.yml: {name} only with ConnectionPooler rds-proxy")
    need(rds["Resources"]["ReadReplicaDatabase"].get("Condition") == "HasReadReplica", "rds.yml: the replica only with ReadReplica")
    replica = rds["Resources"]["ReadReplicaDatabase"]["Properties"]
    need(replica.get("PubliclyAccessible") is False and replica.get("SourceDBInstanceIdentifier") == {"Ref": "Database"},
         "rds.yml: the replica must be private and stream from the instance")
    need(rds["Resources"]["DatabaseProxy"]["Properties"].get("RequireTLS") is True, "rds.yml: the proxy must require TLS")
    need(ecs["Parameters"]["ReadFromReplica"]["Default"] == "false", "ecs.yml: ReadFromReplica must be off by default")
    for svc in ("Issuance", "Verification"):
        env = task_env(ecs, f"{svc}TaskDefinition")
        need(imports(env["RDS_CLUSTER_HOST"]["Value"]) == ["DatabaseServiceEndpoint"]
             and imports(env["DB_POOLER"]["Value"]) == ["DatabasePooler"],
             f"ecs.yml {svc}: RDS_CLUSTER_HOST and DB_POOLER must follow rds.yml's proxy")
    need("DATABASE_READ_URL" not in task_env(ecs, "IssuanceTaskDefinition"), "ecs.yml: issuance must not read from the replica")
    read = task_env(ecs, "VerificationTaskDefinition").get("DATABASE_READ_URL", {})
    need(read.get("Fn::If", [None])[0] == "ReadsFromReplica", "ecs.yml: verification's DATABASE_READ_URL only with ReadFromReplica")
    migrate = task_env(ecs, "MigrateTaskDefinition")
    need(imports(migrate["RDS_CLUSTER_HOST"]["Value"]) == ["DatabaseEndpoint"] and "DB_POOLER" not in migrate,
         "ecs.yml: the migration task must connect to the instance itself (the proxy admits only the services' users)")

CHECKS = {"https-only": https_only, "access-logs": access_logs, "db-roles": db_roles, "rds": rds,
          "private-subnets": private_subnets, "immutable-images": immutable_images, "base-images": base_images,
          "rds-bundle": rds_bundle, "ingress-tls": ingress_tls, "network-policy": network_policy,
          "kustomization": kustomization, "db-tier": db_tier}
if len(sys.argv) != 2 or sys.argv[1] not in CHECKS:
    sys.exit(f"usage: hardening.py {{{'|'.join(CHECKS)}}}")
CHECKS[sys.argv[1]]()
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
