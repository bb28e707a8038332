#!/usr/bin/env bash
# Rolls one ECS service onto the image its task definition names (`latest`
# unless ecs.yml pins a tag): a forced new deployment, zero downtime.
#
#   scripts/deploy_ecs.sh issuance --wait
#   scripts/deploy_ecs.sh verification --dry-run   # print the commands, run nothing
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=scripts/deploy_ecs.sh
# shellcheck source=scripts/lib/cli.sh
source "$ROOT/scripts/lib/cli.sh"

usage() {
    cat <<'HELP'
usage: scripts/deploy_ecs.sh [--wait] [--dry-run] [--help] SERVICE

Forces a new deployment of the ECS service of SERVICE (issuance or
verification): ECS starts new tasks (pulling the image tag again, so a fresh
`latest` from scripts/push_image.sh), waits until the load balancer finds them
healthy, then drains and stops the old ones (minimum healthy 100%, maximum
200%). The deployment circuit breaker rolls back a deployment whose tasks do
not become healthy.

Options:
  --wait      wait until the service is stable (aws ecs wait services-stable,
              up to 10 minutes) and fail if it does not get there
  --dry-run   print every aws command (prefixed with "+ ") instead of running
              it; aws need not be installed
  --help      show this help

Environment (read from .env at the repository root when present; variables
already set in the environment win; values are never printed):
  AWS_REGION        required, e.g. eu-west-1
  AWS_ACCOUNT_ID    optional; when set, the caller's account must be this one
  ENVIRONMENT_NAME  stack prefix, default kube-credential
  ECS_CLUSTER       default ENVIRONMENT_NAME (kube-credential)
  ECS_SERVICE       default ENVIRONMENT_NAME-SERVICE (kube-credential-issuance)
  ALB_DNS           optional; the load balancer's DNS name, for the hints printed at the end
  ENV_FILE          the .env file to read, default REPO/.env
  AWS credentials   as the aws CLI finds them (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)
HELP
}

CLI_ALLOW_WAIT=1
parse_service_args "$@"
load_env_file "${ENV_FILE:-$ROOT/.env}"
require_vars AWS_REGION
check_aws_names
if [ -z "$DRY_RUN" ]; then
    command -v aws >/dev/null 2>&1 || die "missing tool: aws (the AWS CLI) is not installed or not on PATH"
fi

ENVIRONMENT_NAME=${ENVIRONMENT_NAME:-kube-credential}
CLUSTER=${ECS_CLUSTER:-$ENVIRONMENT_NAME}
ECS_SERVICE_NAME=${ECS_SERVICE:-$ENVIRONMENT_NAME-$SERVICE}
[ -n "$CLUSTER" ] || die "ECS_CLUSTER is empty"

if [ -n "$DRY_RUN" ]; then
    printf '%s: dry run: the commands are printed, not run\n' "$PROG"
fi

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

# 1. A new deployment of the same task definition: new tasks, the image pulled again.
update=(aws ecs update-service --region "$AWS_REGION" --cluster "$CLUSTER" --service "$ECS_SERVICE_NAME"
    --force-new-deployment --query 'service.deployments[0].id' --output text)
show "${update[@]}"
if [ -z "$DRY_RUN" ]; then
    deployment=$("${update[@]}") || die "aws ecs update-service failed for service $ECS_SERVICE_NAME in cluster $CLUSTER"
    printf 'started deployment %s of %s\n' "$deployment" "$ECS_SERVICE_NAME"
fi

# 2. Optionally wait until every task of the new deployment runs and is healthy.
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
    outcome="has started; scripts/deploy_ecs.sh $SERVICE --wait waits for it"
fi
cat <<EOF

Deployment of $ECS_SERVICE_NAME in cluster $CLUSTER $outcome

Verify through the load balancer:
${alb_hint:+$alb_hint
}  curl -s http://$ALB/$SERVICE/health            # 200 {"status":"ok",...,"workerId":"ip-10-0-..."}
  BASE_URL=http://$ALB EXPECTED_ISSUANCE_TASKS=2 EXPECTED_VERIFICATION_TASKS=2 k6 run load/distribution.js
Watch it:
  $(quoted aws ecs describe-services --region "$AWS_REGION" --cluster "$CLUSTER" --services "$ECS_SERVICE_NAME" --query 'services[0].deployments')
  aws logs tail /ecs/$ENVIRONMENT_NAME/$SERVICE --region $AWS_REGION --follow
EOF
