#!/usr/bin/env bash
# Deploys one service at one git commit, migrations first: moves the migration
# task to the commit's image and runs it (aws ecs run-task), then moves the
# service's image tag in the ecs.yml stack (a rolling, zero-downtime ECS
# deployment). Images are addressed by commit, never `latest`.
#
#   IMAGE_TAG=abc1234 scripts/deploy_ecs.sh issuance --wait
#   scripts/deploy_ecs.sh verification --dry-run   # print the commands, run nothing
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=scripts/deploy_ecs.sh
# shellcheck source=scripts/lib/cli.sh
source "$ROOT/scripts/lib/cli.sh"

usage() {
    cat <<'HELP'
usage: scripts/deploy_ecs.sh [--wait] [--dry-run] [--help] SERVICE

Deploys SERVICE (issuance or verification) at the commit IMAGE_TAG, whose
images scripts/push_image.sh pushed:
  1. the ecs.yml stack's MigrateImageTag becomes IMAGE_TAG (aws cloudformation
     deploy with this checkout's template; other parameters keep their values)
  2. the migration task runs once (aws ecs run-task, the master user, a member
     of kc_migrator) in the tasks' subnets, and must exit 0; the services' own
     database users may not migrate
  3. the stack's image tag of SERVICE becomes IMAGE_TAG: ECS starts new tasks,
     waits until the load balancer finds them healthy, then drains and stops
     the old ones (minimum healthy 100%, maximum 200%); the deployment circuit
     breaker rolls back a deployment whose tasks do not become healthy
A failed migration stops here, before any service changes. Deploying the other
service at the same commit runs the (then empty) migration again: harmless.

Options:
  --wait      also wait until the service is stable (aws ecs wait
              services-stable, up to 10 minutes) and fail if it does not get there
  --dry-run   print every aws command (prefixed with "+ ") instead of running
              it; aws need not be installed
  --help      show this help

Environment (read from .env at the repository root when present; variables
already set in the environment win; values are never printed):
  AWS_REGION        required, e.g. eu-west-1
  AWS_ACCOUNT_ID    optional; when set, the caller's account must be this one
  IMAGE_TAG         required: the git commit to deploy (7-40 hex digits), the
                    tag scripts/push_image.sh gave both images, e.g.
                    IMAGE_TAG=$(git rev-parse --short HEAD)
  ENVIRONMENT_NAME  stack prefix, default kube-credential
  ECS_STACK         default ENVIRONMENT_NAME-ecs
  ECS_CLUSTER       default ENVIRONMENT_NAME (kube-credential)
  ECS_SERVICE       default ENVIRONMENT_NAME-SERVICE (kube-credential-issuance)
  ALB_DNS           optional; the API's host name, for the hints printed at the end
  ENV_FILE          the .env file to read, default REPO/.env
  AWS credentials   as the aws CLI finds them (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)
HELP
}

CLI_ALLOW_WAIT=1
parse_service_args "$@"
load_env_file "${ENV_FILE:-$ROOT/.env}"
require_vars AWS_REGION IMAGE_TAG
check_aws_names
if [ -z "$DRY_RUN" ]; then
    command -v aws >/dev/null 2>&1 || die "missing tool: aws (the AWS CLI) is not installed or not on PATH"
fi

ENVIRONMENT_NAME=${ENVIRONMENT_NAME:-kube-credential}
STACK=${ECS_STACK:-$ENVIRONMENT_NAME-ecs}
CLUSTER=${ECS_CLUSTER:-$ENVIRONMENT_NAME}
ECS_SERVICE_NAME=${ECS_SERVICE:-$ENVIRONMENT_NAME-$SERVICE}
[ -n "$CLUSTER" ] || die "ECS_CLUSTER is empty"
[[ $IMAGE_TAG =~ ^[0-9a-f]{7,40}$ ]] ||
    die "IMAGE_TAG must be a git commit, 7 to 40 hex digits (got '$IMAGE_TAG'); never latest"
# ecs.yml's parameter for this service's tag (no ${SERVICE^}: macOS ships bash 3.2).
case "$SERVICE" in
    issuance) TAG_PARAMETER=IssuanceImageTag ;;
    verification) TAG_PARAMETER=VerificationImageTag ;;
esac

if [ -n "$DRY_RUN" ]; then
    printf '%s: dry run: the commands are printed, not run\n' "$PROG"
fi
cd "$ROOT"

# 0. The right account? (only when AWS_ACCOUNT_ID says which one)
if [ -n "${AWS_ACCOUNT_ID:-}" ]; then
    show aws sts get-caller-identity --region "$AWS_REGION" --query Account --output text
    if [ -z "$DRY_RUN" ]; then
        caller=$(aws sts get-caller-identity --region "$AWS_REGION" --query Account --output text) ||
            die "aws sts get-caller-identity failed: are AWS credentials configured?"
        [ "$caller" = "$AWS_ACCOUNT_ID" ] ||
            die "the AWS credentials belong to account $caller, not AWS_ACCOUNT_ID=$AWS_ACCOUNT_ID"
    fi
fi

# set_tag PARAMETER: the stack's PARAMETER becomes IMAGE_TAG (the rest keep theirs).
set_tag() {
    local deploy=(aws cloudformation deploy --region "$AWS_REGION" --stack-name "$STACK"
        --template-file deploy/cloudformation/ecs.yml --capabilities CAPABILITY_IAM
        --no-fail-on-empty-changeset --parameter-overrides "$1=$IMAGE_TAG")
    show "${deploy[@]}"
    [ -n "$DRY_RUN" ] || "${deploy[@]}" || die "aws cloudformation deploy of $STACK ($1=$IMAGE_TAG) failed"
}

# 1. The migration task's image becomes the commit's.
set_tag MigrateImageTag

# 2. Run it where the services run (the VPC stack's task subnets), and wait.
exports=(aws cloudformation list-exports --region "$AWS_REGION"
    --query "Exports[?starts_with(Name, '$ENVIRONMENT_NAME-Task')].[Name,Value]" --output text)
show "${exports[@]}"
subnet1="<TaskSubnet1>" subnet2="<TaskSubnet2>" group="<TaskSecurityGroupId>" public_ip="<TaskAssignPublicIp>"
if [ -z "$DRY_RUN" ]; then
    while read -r name value; do
        case "${name#"$ENVIRONMENT_NAME"-}" in
            TaskSubnet1) subnet1=$value ;;
            TaskSubnet2) subnet2=$value ;;
            TaskSecurityGroupId) group=$value ;;
            TaskAssignPublicIp) public_ip=$value ;;
        esac
    done < <("${exports[@]}") || die "aws cloudformation list-exports failed"
    [[ $subnet1 != "<"* && $group != "<"* && $public_ip != "<"* ]] ||
        die "the exports $ENVIRONMENT_NAME-TaskSubnet1/2, -TaskSecurityGroupId and -TaskAssignPublicIp are missing: are the vpc and security-groups stacks up to date?"
fi
run_task=(aws ecs run-task --region "$AWS_REGION" --cluster "$CLUSTER" --task-definition "$ENVIRONMENT_NAME-migrate"
    --launch-type FARGATE --started-by deploy_ecs.sh
    --network-configuration "awsvpcConfiguration={subnets=[$subnet1,$subnet2],securityGroups=[$group],assignPublicIp=$public_ip}"
    --query 'tasks[0].taskArn' --output text)
show "${run_task[@]}"
task="<migration-task-arn>"
if [ -z "$DRY_RUN" ]; then
    task=$("${run_task[@]}") || task=""
    if [ -z "$task" ] || [ "$task" = None ]; then
        die "aws ecs run-task of $ENVIRONMENT_NAME-migrate started no task (run it without --query to see its failures)"
    fi
    printf 'migration task %s started\n' "${task##*/}"
fi
stopped=(aws ecs wait tasks-stopped --region "$AWS_REGION" --cluster "$CLUSTER" --tasks "$task")
exit_code=(aws ecs describe-tasks --region "$AWS_REGION" --cluster "$CLUSTER" --tasks "$task"
    --query 'tasks[0].containers[0].exitCode' --output text)
show "${stopped[@]}"
show "${exit_code[@]}"
if [ -z "$DRY_RUN" ]; then
    "${stopped[@]}" || die "the migration task ${task##*/} did not stop within 10 minutes"
    code=$("${exit_code[@]}") || die "aws ecs describe-tasks failed for the migration task ${task##*/}"
    if [ "$code" != 0 ]; then
        printf '%s: error: the migration task exited with %s; %s was not changed. Its log:\n' "$PROG" "$code" "$ECS_SERVICE_NAME" >&2
        printf '  aws logs tail /ecs/%s/migrate --region %s --since 30m --log-stream-name-prefix migrate/migrate/%s\n' \
            "$ENVIRONMENT_NAME" "$AWS_REGION" "${task##*/}" >&2
        exit 1
    fi
    printf 'migrations applied\n'
fi

# 3. The service's image becomes the commit's: a rolling deployment.
set_tag "$TAG_PARAMETER"

# 4. Optionally wait until every task of the new deployment runs and is healthy.
if [ -n "$WAIT" ]; then
    wait_cmd=(aws ecs wait services-stable --region "$AWS_REGION" --cluster "$CLUSTER" --services "$ECS_SERVICE_NAME")
    show "${wait_cmd[@]}"
    if [ -z "$DRY_RUN" ]; then
        printf 'waiting for %s to become stable (up to 10 minutes)...\n' "$ECS_SERVICE_NAME"
        if ! "${wait_cmd[@]}"; then
            printf '%s: error: %s did not become stable. Its events say why:\n' "$PROG" "$ECS_SERVICE_NAME" >&2
            printf '  %s\n' "$(quoted aws ecs describe-services --region "$AWS_REGION" --cluster "$CLUSTER" \
                --services "$ECS_SERVICE_NAME" --query 'services[0].events[:10].message' --output text)" >&2
            printf '  (the deployment circuit breaker rolls back a deployment whose tasks keep failing)\n' >&2
            exit 1
        fi
        printf '%s is stable\n' "$ECS_SERVICE_NAME"
    fi
fi

ALB=${ALB_DNS:-}
if [ -z "$ALB" ]; then
    ALB="\$ALB_DNS"
    lookup=$(quoted aws cloudformation describe-stacks --region "$AWS_REGION" --stack-name "$ENVIRONMENT_NAME-alb" \
        --query "Stacks[0].Outputs[?OutputKey=='LoadBalancerDnsName'].OutputValue" --output text)
    alb_hint="  ALB_DNS=\$($lookup)"
else
    alb_hint=""
fi
if [ -n "$DRY_RUN" ]; then
    outcome="(dry run: nothing was changed)"
elif [ -n "$WAIT" ]; then
    outcome="is done: the service is stable"
else
    outcome="is done (CloudFormation waited for it)"
fi
cat <<EOF

Deployment of $ECS_SERVICE_NAME at $IMAGE_TAG in cluster $CLUSTER $outcome

Verify through the load balancer:
${alb_hint:+$alb_hint
}  curl -s https://$ALB/$SERVICE/health            # 200 {"status":"ok",...,"workerId":"ip-10-0-..."}
  BASE_URL=https://$ALB EXPECTED_ISSUANCE_TASKS=2 EXPECTED_VERIFICATION_TASKS=2 k6 run load/distribution.js
Watch it:
  $(quoted aws ecs describe-services --region "$AWS_REGION" --cluster "$CLUSTER" --services "$ECS_SERVICE_NAME" --query 'services[0].deployments')
  aws logs tail /ecs/$ENVIRONMENT_NAME/$SERVICE --region $AWS_REGION --follow
EOF
