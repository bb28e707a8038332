#!/usr/bin/env bash
# Checks the deployment files offline: no AWS account, no credentials, no
# Docker engine, no cluster.
#
#   (a) shellcheck on push_image.sh, deploy_ecs.sh and tunnel.sh
#   (b) cfn-lint on deploy/cloudformation/*.yml, and that the stacks' imports
#       and exports chain (vpc -> security-groups -> ecr -> rds -> alb -> ecs)
#   (c) deploy/k8s against the Kubernetes 1.30 schemas (kubernetes-validate --strict)
#       Also: ECS, k8s and compose require API keys and never allow CORS *; WAF on the ALB
#   (d) the --dry-run commands of the scripts, line by line, and their errors
#   (e) the Grafana dashboard: its queries through promtool
#   (f) the production hardening, one check per change (scripts/checks/hardening.py):
#       HTTPS only, ALB access logs, least-privilege database roles, RDS defaults,
#       private subnets, immutable images, base images by digest, the RDS bundle's
#       checksum, ingress TLS, the NetworkPolicy, no Secret in the kustomization,
#       the optional RDS Proxy and read replica (off by default, wired to the services)
#   (g) the HTTP contract: core/openapi.json against the OpenAPI 3.1 schema
#       (openapi-spec-validator); scripts/schemathesis.sh fuzzes the services with it
#
# Installs shellcheck and prometheus (for promtool; apt-get), cfn-lint,
# kubernetes-validate and openapi-spec-validator (PyPI) when missing. Exits non-zero on any failure; the last line reads
# "deploy checks: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
    --help | -h)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    "") ;;
    *)
        echo "unknown argument: $1 (try --help)" >&2
        exit 2
        ;;
esac

# Kubernetes version the manifests must be valid for: 1.30 is the first with
# the preStop `sleep` action enabled by default.
K8S_VERSION=1.30.0
SCRIPTS=(scripts/push_image.sh scripts/deploy_ecs.sh scripts/tunnel.sh)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-deploy.XXXXXX")
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

PASSED=0
FAILED=0
pass() {
    PASSED=$((PASSED + 1))
    printf 'ok    %s\n' "$1"
}
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s\n' "$1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        sed 's/^/      | /' "$2"
    fi
}
# check NAME COMMAND...: passes when COMMAND exits 0; shows its output otherwise.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/out" 2>&1; then
        pass "$name"
    else
        fail "$name" "$WORK/out"
    fi
}

install_apt() { # package
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        printf '[check-deploy] installing %s (apt-get)\n' "$1"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"; } >"$WORK/apt.log" 2>&1 ||
            cat "$WORK/apt.log"
    fi
}
# The Python tools live in the project's virtual environment under target/tools
# (scripts/lib/tools.sh), never in the system's Python, and run as its modules.
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
PY="$KC_TOOLS_VENV/bin/python"
python_has() { [ -x "$PY" ] && "$PY" -c "import $1" >/dev/null 2>&1; }
install_pip() { # module package
    python_has "$1" && return 0
    printf '[check-deploy] installing %s into %s\n' "$2" "$KC_TOOLS_VENV"
    if tools_venv; then
        "$PY" -m pip install --quiet --disable-pip-version-check "$2" >"$WORK/pip.log" 2>&1 || cat "$WORK/pip.log"
    fi
    python_has "$1"
}
cfn_lint() {
    "$PY" -c 'import sys; from cfnlint.runner import main; sys.argv[0] = "cfn-lint"; sys.exit(main())' "$@"
}
kubernetes_validate() {
    "$PY" -m kubernetes_validate "$@"
}

# --- (a) shellcheck ------------------------------------------------------------
echo "== (a) shellcheck"
command -v shellcheck >/dev/null 2>&1 || install_apt shellcheck
if command -v shellcheck >/dev/null 2>&1; then
    for script in "${SCRIPTS[@]}" scripts/check-deploy.sh; do
        check "shellcheck $script" shellcheck -x "$script"
    done
else
    fail "shellcheck is not installed (apt-get install -y shellcheck)"
fi

# --- (b) CloudFormation --------------------------------------------------------
echo "== (b) cfn-lint"
STACKS=(vpc security-groups ecr rds alb ecs)
if install_pip cfnlint cfn-lint; then
    for stack in "${STACKS[@]}"; do
        check "cfn-lint deploy/cloudformation/$stack.yml" cfn_lint -- "deploy/cloudformation/$stack.yml"
    done
    for template in deploy/cloudformation/*.yml; do
        case " ${STACKS[*]} " in
            *" $(basename "$template" .yml) "*) ;;
            *) check "cfn-lint $template" cfn_lint -- "$template" ;;
        esac
    done
    # What cfn-lint cannot see across files: every Fn::ImportValue is exported
    # by a stack created before, and the numbers that must agree do.
    check "stacks chain: each import is exported by an earlier stack" "$PY" scripts/checks/stacks_chain.py "${STACKS[@]}"
else
    fail "cfn-lint is not installed and could not be (into target/tools)" "$WORK/pip.log"
fi

# --- (c) Kubernetes --------------------------------------------------------------
echo "== (c) Kubernetes manifests (kubernetes-validate --strict -k $K8S_VERSION)"
# One-offs are applied by hand after editing, never by the kustomization: the
# Jobs (migrations before each rollout, API clients), and the example Secrets.
ONE_OFFS=(deploy/k8s/clients-job.example.yaml deploy/k8s/migrate-job.yaml deploy/k8s/secret.example.yaml)
MANIFESTS=()
for f in deploy/k8s/*.yaml; do
    case " kustomization.yaml ${ONE_OFFS[*]##*/} " in
        *" $(basename "$f") "*) ;;
        *) MANIFESTS+=("$f") ;;
    esac
done
if install_pip kubernetes_validate kubernetes-validate; then
    for f in "${MANIFESTS[@]}" "${ONE_OFFS[@]}"; do
        check "kubernetes-validate $f" kubernetes_validate --strict -k "$K8S_VERSION" --quiet "$f"
    done
else
    fail "kubernetes-validate is not installed and could not be (into target/tools)" "$WORK/pip.log"
fi
# The checks below read YAML with the venv's PyYAML (cfn-lint brings it too).
install_pip yaml pyyaml || fail "PyYAML is not installed and could not be (into target/tools)" "$WORK/pip.log"
check "kustomization.yaml lists every manifest, each exists, no one-off" \
    "$PY" scripts/checks/kustomization.py "${MANIFESTS[@]}" --one-off "${ONE_OFFS[@]}"
check "manifests: probes, preStop sleep, grace period, security context, access control, the Jobs" \
    "$PY" scripts/checks/manifests.py
check "docker-compose.yml: API keys required, one trusted proxy hop, no CORS *" "$PY" scripts/checks/compose.py
if command -v kubectl >/dev/null 2>&1; then
    if kubectl kustomize deploy/k8s >"$WORK/rendered.yaml" 2>"$WORK/out"; then
        pass "kubectl kustomize deploy/k8s renders"
        if python_has kubernetes_validate; then
            check "kubernetes-validate of the rendered kustomization" \
                kubernetes_validate --strict -k "$K8S_VERSION" --quiet "$WORK/rendered.yaml"
        fi
    else
        fail "kubectl kustomize deploy/k8s renders" "$WORK/out"
    fi
else
    echo "skip  kubectl kustomize (kubectl not installed)"
fi

# --- (d) the scripts' dry runs and errors ------------------------------------------
echo "== (d) dry runs and error messages"
# A PATH without aws, docker, git or ssh: dry runs must not need them.
mkdir -p "$WORK/bin"
for tool in dirname cat; do
    ln -s "$(command -v "$tool")" "$WORK/bin/$tool"
done
# run_script OUT SCRIPT ARGS... (environment: VAR=value pairs in ENVS)
# Runs with an empty environment apart from ENVS, the bare PATH and no .env.
run_script() {
    local out=$1
    shift
    env -i PATH="$WORK/bin" HOME="$WORK" ENV_FILE="$WORK/no.env" ${ENVS[@]+"${ENVS[@]}"} "$BASH" "$@" >"$out" 2>&1
}
# expect_lines NAME EXPECTED_FILE SCRIPT ARGS...: exit 0 and exactly these "+ " lines.
expect_lines() {
    local name=$1 expected=$2
    shift 2
    if ! run_script "$WORK/run.out" "$@"; then
        fail "$name (exit code $?)" "$WORK/run.out"
        return
    fi
    grep '^+ ' "$WORK/run.out" >"$WORK/actual" || true
    if diff -u "$expected" "$WORK/actual" >"$WORK/diff"; then
        pass "$name"
    else
        fail "$name" "$WORK/diff"
    fi
}
# expect_error NAME PATTERN SCRIPT ARGS...: non-zero exit, PATTERN in the output.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    if run_script "$WORK/run.out" "$@"; then
        fail "$name (exited 0)" "$WORK/run.out"
    elif grep -q -- "$pattern" "$WORK/run.out"; then
        pass "$name"
    else
        echo "(expected the output to contain: $pattern)" >>"$WORK/run.out"
        fail "$name" "$WORK/run.out"
    fi
}

REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com
BASE=(AWS_REGION=eu-west-1 AWS_ACCOUNT_ID=123456789012 IMAGE_TAG=abc1234)

for service in issuance verification; do
    cat >"$WORK/expected" <<EOF
+ aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin $REGISTRY
+ docker build --platform linux/amd64 --build-arg SERVICE=$service -t $REGISTRY/kube-credential-$service:abc1234 .
+ docker push $REGISTRY/kube-credential-$service:abc1234
EOF
    ENVS=("${BASE[@]}")
    expect_lines "push_image.sh $service --dry-run: the exact commands (one commit tag, no latest), without aws/docker/git" \
        "$WORK/expected" scripts/push_image.sh "$service" --dry-run
done

# deploy_ecs_lines CLUSTER SERVICE_TAG_PARAMETER TAG: the migration task, then the service's tag.
deploy_ecs_lines() {
    local deploy="aws cloudformation deploy --region eu-west-1 --stack-name kube-credential-ecs"
    deploy+=" --template-file deploy/cloudformation/ecs.yml --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset"
    local migrate="MigrateImageTag=$3" service="$2=$3"
    local network="'awsvpcConfiguration={subnets=[<TaskSubnet1>,<TaskSubnet2>],securityGroups=[<TaskSecurityGroupId>],assignPublicIp=<TaskAssignPublicIp>}'"
    cat <<EOF
+ $deploy --parameter-overrides $migrate
+ aws cloudformation list-exports --region eu-west-1 --query "Exports[?starts_with(Name, 'kube-credential-Task')].[Name,Value]" --output text
+ aws ecs run-task --region eu-west-1 --cluster $1 --task-definition kube-credential-migrate --launch-type FARGATE --started-by deploy_ecs.sh --network-configuration $network --query 'tasks[0].taskArn' --output text
+ aws ecs wait tasks-stopped --region eu-west-1 --cluster $1 --tasks '<migration-task-arn>'
+ aws ecs describe-tasks --region eu-west-1 --cluster $1 --tasks '<migration-task-arn>' --query 'tasks[0].containers[0].exitCode' --output text
+ $deploy --parameter-overrides $service
EOF
}
{
    echo "+ aws sts get-caller-identity --region eu-west-1 --query Account --output text"
    deploy_ecs_lines kube-credential IssuanceImageTag abc1234
    echo "+ aws ecs wait services-stable --region eu-west-1 --cluster kube-credential --services kube-credential-issuance"
} >"$WORK/expected"
ENVS=("${BASE[@]}")
expect_lines "deploy_ecs.sh issuance --dry-run --wait: migration task first, then the commit's tag, without aws" \
    "$WORK/expected" scripts/deploy_ecs.sh --dry-run issuance --wait

deploy_ecs_lines blue VerificationImageTag 0123456789abcdef0123456789abcdef01234567 >"$WORK/expected"
ENVS=(AWS_REGION=eu-west-1 ECS_CLUSTER=blue ECS_SERVICE=blue-verification IMAGE_TAG=0123456789abcdef0123456789abcdef01234567)
expect_lines "deploy_ecs.sh verification --dry-run with ECS_CLUSTER/ECS_SERVICE and a full commit" \
    "$WORK/expected" scripts/deploy_ecs.sh verification --dry-run

cat >"$WORK/expected" <<'EOF'
+ ssh -N -L 5433:kc.abc.eu-west-1.rds.amazonaws.com:5432 ec2-user@bastion.example.com -i /keys/kc.pem -o ExitOnForwardFailure=yes -o ServerAliveInterval=30
EOF
ENVS=(BASTION_HOST=bastion.example.com BASTION_KEY=/keys/kc.pem RDS_CLUSTER_HOST=kc.abc.eu-west-1.rds.amazonaws.com)
expect_lines "tunnel.sh --dry-run: the exact ssh command, without ssh" "$WORK/expected" scripts/tunnel.sh --dry-run
if run_script "$WORK/run.out" scripts/tunnel.sh --dry-run &&
    grep -qF 'DATABASE_URL=postgres://kcadmin:<password>@127.0.0.1:5433/credentials?sslmode=require' "$WORK/run.out"; then
    pass "tunnel.sh --dry-run prints the DATABASE_URL with the password elided"
else
    fail "tunnel.sh --dry-run prints the DATABASE_URL with the password elided" "$WORK/run.out"
fi

# Missing variables and a wrong SERVICE name what is wrong.
ENVS=(AWS_ACCOUNT_ID=123456789012 IMAGE_TAG=abc1234)
expect_error "push_image.sh without AWS_REGION names it" "missing variable(s): AWS_REGION" \
    scripts/push_image.sh issuance --dry-run
ENVS=(AWS_REGION=eu-west-1 IMAGE_TAG=abc1234)
expect_error "push_image.sh without AWS_ACCOUNT_ID names it" "missing variable(s): AWS_ACCOUNT_ID" \
    scripts/push_image.sh issuance --dry-run
ENVS=(AWS_ACCOUNT_ID=123456789012 IMAGE_TAG=abc1234)
expect_error "deploy_ecs.sh without AWS_REGION names it" "missing variable(s): AWS_REGION" \
    scripts/deploy_ecs.sh issuance --dry-run
ENVS=(AWS_REGION=eu-west-1)
expect_error "deploy_ecs.sh without IMAGE_TAG asks for the commit to deploy" "missing variable(s): IMAGE_TAG" \
    scripts/deploy_ecs.sh issuance --dry-run
ENVS=("${BASE[@]}")
expect_error "push_image.sh with a wrong SERVICE says which are valid" \
    "SERVICE must be issuance or verification (got 'billing')" scripts/push_image.sh billing --dry-run
expect_error "deploy_ecs.sh with a wrong SERVICE says which are valid" \
    "SERVICE must be issuance or verification (got 'billing')" scripts/deploy_ecs.sh billing --dry-run
expect_error "push_image.sh without SERVICE asks for it" "SERVICE is missing" scripts/push_image.sh --dry-run
# Immutable images: a commit, never latest.
ENVS=(AWS_REGION=eu-west-1 AWS_ACCOUNT_ID=123456789012 IMAGE_TAG=latest)
expect_error "push_image.sh refuses IMAGE_TAG=latest" "IMAGE_TAG must be a git commit" scripts/push_image.sh issuance --dry-run
expect_error "deploy_ecs.sh refuses IMAGE_TAG=latest" "IMAGE_TAG must be a git commit" scripts/deploy_ecs.sh issuance --dry-run
ENVS=(BASTION_USER=ec2-user)
expect_error "tunnel.sh names its missing variables" \
    "missing variable(s): BASTION_HOST BASTION_KEY RDS_CLUSTER_HOST" scripts/tunnel.sh --dry-run
ENVS=(BASTION_HOST=b.example.com BASTION_KEY=/keys/kc.pem RDS_CLUSTER_HOST=127.0.0.1)
expect_error "tunnel.sh refuses 127.0.0.1 as the RDS endpoint" "RDS_CLUSTER_HOST is 127.0.0.1" \
    scripts/tunnel.sh --dry-run

# Without --dry-run the tools are required, and named.
ENVS=("${BASE[@]}")
expect_error "push_image.sh without aws on PATH names the tool" "missing tool: aws" scripts/push_image.sh issuance
expect_error "deploy_ecs.sh without aws on PATH names the tool" "missing tool: aws" scripts/deploy_ecs.sh issuance
ENVS=(BASTION_HOST=b.example.com BASTION_KEY=/keys/kc.pem RDS_CLUSTER_HOST=db.example.com)
expect_error "tunnel.sh without ssh on PATH names the tool" "missing tool: ssh" scripts/tunnel.sh

# .env is read (the environment wins), and no value from it is ever printed.
cat >"$WORK/dot.env" <<'EOF'
# a comment
AWS_REGION=eu-west-1
export AWS_ACCOUNT_ID="123456789012"
AWS_ACCESS_KEY_ID=AKIAEXAMPLEDONOTPRINT
AWS_SECRET_ACCESS_KEY='secret-that-must-not-be-printed'
RDS_CLUSTER_PASSWORD=db-password-that-must-not-be-printed
IMAGE_TAG=from-dotenv
EOF
cat >"$WORK/expected" <<EOF
+ aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin $REGISTRY
+ docker build --platform linux/amd64 --build-arg SERVICE=issuance -t $REGISTRY/kube-credential-issuance:abc1234 .
+ docker push $REGISTRY/kube-credential-issuance:abc1234
EOF
ENVS=(ENV_FILE="$WORK/dot.env" IMAGE_TAG=abc1234)
expect_lines "push_image.sh reads .env, the environment winning over it" \
    "$WORK/expected" scripts/push_image.sh issuance --dry-run
if grep -qE 'AKIAEXAMPLE|secret-that|db-password' "$WORK/run.out"; then
    fail "push_image.sh never prints a value from .env" "$WORK/run.out"
else
    pass "push_image.sh never prints a value from .env"
fi
ENVS=(ENV_FILE="$WORK/dot.env" IMAGE_TAG=abc1234)
run_script "$WORK/run.out" scripts/deploy_ecs.sh issuance --dry-run --wait || true
if grep -q '^+ aws cloudformation deploy --region eu-west-1 .*IssuanceImageTag=abc1234$' "$WORK/run.out" &&
    ! grep -qE 'AKIAEXAMPLE|secret-that|db-password' "$WORK/run.out"; then
    pass "deploy_ecs.sh reads .env and never prints a value from it"
else
    fail "deploy_ecs.sh reads .env and never prints a value from it" "$WORK/run.out"
fi

# Real runs against stand-ins for aws, docker and ssh that record their
# arguments: the same commands run, and the ECR password goes through stdin only.
mkdir -p "$WORK/stubs"
for tool in aws docker ssh; do
    cat >"$WORK/stubs/$tool" <<EOF
#!$BASH
# docker login reads the pipe to its end before it records itself, so the
# pipeline's two commands are always recorded in the same order.
stdin=""
[ "$tool \$1" != "docker login" ] || stdin=\$(cat)
printf '%s\n' "$tool \$*" >>"$WORK/calls"
case "$tool \$1 \$2" in
    "aws ecr get-login-password") printf 'stub-ecr-password\n' ;;
    "aws sts get-caller-identity") printf '123456789012\n' ;;
    "aws cloudformation list-exports")
        printf 'kube-credential-TaskSubnet1\tsubnet-1\nkube-credential-TaskSubnet2\tsubnet-2\n'
        printf 'kube-credential-TaskSecurityGroupId\tsg-1\nkube-credential-TaskAssignPublicIp\tDISABLED\n' ;;
    "aws ecs run-task") printf 'arn:aws:ecs:eu-west-1:123456789012:task/kube-credential/0123abcd\n' ;;
    "aws ecs describe-tasks") printf '%s\n' "\${STUB_MIGRATION_EXIT:-0}" ;;
    "docker login "*) [ "\$stdin" = stub-ecr-password ] || { echo "docker login: no password on stdin" >&2; exit 1; } ;;
esac
EOF
    chmod +x "$WORK/stubs/$tool"
done
# run_stubbed NAME EXPECTED_CALLS SCRIPT ARGS...: exit 0, exactly these calls, no password shown.
run_stubbed() {
    local name=$1 expected=$2
    shift 2
    rm -f "$WORK/calls"
    if ! env -i PATH="$WORK/stubs:$WORK/bin" HOME="$WORK" ENV_FILE="$WORK/no.env" ${ENVS[@]+"${ENVS[@]}"} \
        "$BASH" "$@" >"$WORK/run.out" 2>&1; then
        fail "$name (exit code $?)" "$WORK/run.out"
    elif ! diff -u "$expected" "$WORK/calls" >"$WORK/diff" 2>&1; then
        fail "$name" "$WORK/diff"
    elif grep -q stub-ecr-password "$WORK/run.out"; then
        fail "$name: the ECR password was printed" "$WORK/run.out"
    else
        pass "$name"
    fi
}
cat >"$WORK/expected" <<EOF
aws ecr get-login-password --region eu-west-1
docker login --username AWS --password-stdin $REGISTRY
docker build --platform linux/amd64 --build-arg SERVICE=issuance -t $REGISTRY/kube-credential-issuance:abc1234 .
docker push $REGISTRY/kube-credential-issuance:abc1234
EOF
ENVS=("${BASE[@]}")
run_stubbed "push_image.sh issuance runs those commands (stand-in aws/docker)" "$WORK/expected" \
    scripts/push_image.sh issuance
TASK=arn:aws:ecs:eu-west-1:123456789012:task/kube-credential/0123abcd
STACK_DEPLOY="aws cloudformation deploy --region eu-west-1 --stack-name kube-credential-ecs --template-file deploy/cloudformation/ecs.yml --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides"
cat >"$WORK/expected" <<EOF
aws sts get-caller-identity --region eu-west-1 --query Account --output text
$STACK_DEPLOY MigrateImageTag=abc1234
aws cloudformation list-exports --region eu-west-1 --query Exports[?starts_with(Name, 'kube-credential-Task')].[Name,Value] --output text
aws ecs run-task --region eu-west-1 --cluster kube-credential --task-definition kube-credential-migrate --launch-type FARGATE --started-by deploy_ecs.sh --network-configuration awsvpcConfiguration={subnets=[subnet-1,subnet-2],securityGroups=[sg-1],assignPublicIp=DISABLED} --query tasks[0].taskArn --output text
aws ecs wait tasks-stopped --region eu-west-1 --cluster kube-credential --tasks $TASK
aws ecs describe-tasks --region eu-west-1 --cluster kube-credential --tasks $TASK --query tasks[0].containers[0].exitCode --output text
$STACK_DEPLOY VerificationImageTag=abc1234
aws ecs wait services-stable --region eu-west-1 --cluster kube-credential --services kube-credential-verification
EOF
run_stubbed "deploy_ecs.sh verification --wait: migrates in the task subnets, then deploys the commit (stand-in aws)" \
    "$WORK/expected" scripts/deploy_ecs.sh verification --wait
rm -f "$WORK/calls"
if env -i PATH="$WORK/stubs:$WORK/bin" HOME="$WORK" ENV_FILE="$WORK/no.env" AWS_REGION=eu-west-1 IMAGE_TAG=abc1234 \
    STUB_MIGRATION_EXIT=1 "$BASH" scripts/deploy_ecs.sh issuance >"$WORK/run.out" 2>&1; then
    fail "deploy_ecs.sh stops when the migration task fails (exited 0)" "$WORK/run.out"
elif grep -q "the migration task exited with 1" "$WORK/run.out" && ! grep -q "IssuanceImageTag" "$WORK/calls"; then
    pass "deploy_ecs.sh stops when the migration task fails, the service untouched"
else
    fail "deploy_ecs.sh stops when the migration task fails, the service untouched" "$WORK/run.out"
fi
rm -f "$WORK/calls"
if env -i PATH="$WORK/stubs:$WORK/bin" HOME="$WORK" ENV_FILE="$WORK/no.env" AWS_REGION=eu-west-1 \
    AWS_ACCOUNT_ID=999999999999 IMAGE_TAG=abc1234 "$BASH" scripts/deploy_ecs.sh issuance >"$WORK/run.out" 2>&1; then
    fail "deploy_ecs.sh refuses credentials of another account (exited 0)" "$WORK/run.out"
elif grep -q "account 123456789012, not AWS_ACCOUNT_ID=999999999999" "$WORK/run.out" &&
    ! grep -q "cloudformation deploy" "$WORK/calls"; then
    pass "deploy_ecs.sh refuses credentials of another account"
else
    fail "deploy_ecs.sh refuses credentials of another account" "$WORK/run.out"
fi
mkdir -p "$WORK/keys"
: >"$WORK/keys/kc.pem"
cat >"$WORK/expected" <<EOF
ssh -N -L 5433:db.example.com:5432 ec2-user@b.example.com -i $WORK/keys/kc.pem -o ExitOnForwardFailure=yes -o ServerAliveInterval=30
EOF
ENVS=(BASTION_HOST=b.example.com BASTION_KEY="$WORK/keys/kc.pem" RDS_CLUSTER_HOST=db.example.com)
run_stubbed "tunnel.sh runs that ssh command (stand-in ssh)" "$WORK/expected" scripts/tunnel.sh

ENVS=()
for script in "${SCRIPTS[@]}"; do
    if run_script "$WORK/run.out" "$script" --help && grep -q '^usage: ' "$WORK/run.out"; then
        pass "$script --help"
    else
        fail "$script --help" "$WORK/run.out"
    fi
done

# --- (e) Grafana -------------------------------------------------------------------
echo "== (e) Grafana dashboard (promtool check rules on its queries)"
command -v promtool >/dev/null 2>&1 || install_apt prometheus
if command -v promtool >/dev/null 2>&1; then
    check "deploy/grafana/kube-credential.json: described panels, queries promtool accepts" \
        "$PY" scripts/checks/dashboard.py deploy/grafana/kube-credential.json "$(command -v promtool)" "$WORK"
else
    fail "promtool is not installed and could not be (apt-get install prometheus)" "$WORK/apt.log"
fi

# --- (f) hardening ---------------------------------------------------------------------
echo "== (f) production hardening, one check per change"
if python_has cfnlint && python_has yaml; then
    while IFS='|' read -r name what; do
        check "$what" "$PY" scripts/checks/hardening.py "$name"
    done <<'EOF'
https-only|alb.yml HTTPS only: a certificate or an explicit AllowPlainHttp, port 80 redirects
access-logs|alb.yml access logs to a private S3 bucket (AccessLogs, on by default)
db-roles|least-privilege database users; migrations only by the one-off task/Job (ECS, k8s, sql/004)
rds|rds.yml: RDS-managed master password, storage autoscaling, deletion protection, 7-day backups
private-subnets|tasks in private subnets when vpc.yml PrivateEgress allows (NAT or VPC endpoints)
immutable-images|immutable ECR tags, images by commit or digest, never latest
base-images|Dockerfile and compose base images pinned by digest
rds-bundle|the RDS CA bundle checked against a pinned SHA-256
ingress-tls|Kubernetes ingress: TLS, HTTP redirected to HTTPS
network-policy|NetworkPolicy: only the ingress controller and Prometheus reach the pods
kustomization|kustomization.yaml applies no Secret (the example is a one-off)
db-tier|rds.yml RDS Proxy and read replica off by default; services follow its exports, migrations direct, only verification reads the replica
EOF
else
    fail "the hardening checks need cfn-lint and PyYAML (into target/tools)" "$WORK/pip.log"
fi

# --- (g) the OpenAPI document ----------------------------------------------------------
echo "== (g) the HTTP contract (openapi-spec-validator)"
if install_pip openapi_spec_validator openapi-spec-validator; then
    check "core/openapi.json is a valid OpenAPI 3.1 document" "$PY" -m openapi_spec_validator core/openapi.json
else
    fail "openapi-spec-validator is not installed and could not be (into target/tools)" "$WORK/pip.log"
fi

echo
echo "deploy checks: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
