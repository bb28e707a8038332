#!/usr/bin/env bash
# Builds one service's image and pushes it to its ECR repository, tagged with
# the git short sha only: the repositories' tags are immutable, and nothing is
# ever tagged or deployed as `latest`.
#
#   scripts/push_image.sh issuance
#   scripts/push_image.sh verification --dry-run   # print the commands, run nothing
#
# Then roll the ECS service onto it: scripts/deploy_ecs.sh SERVICE --wait
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=scripts/push_image.sh
# shellcheck source=scripts/lib/cli.sh
source "$ROOT/scripts/lib/cli.sh"

usage() {
    cat <<'HELP'
usage: scripts/push_image.sh [--dry-run] [--help] SERVICE

Builds the scratch image of SERVICE (issuance or verification) from the
Dockerfile at the repository root, logs in to Amazon ECR, tags the image with
the git short sha of HEAD (never `latest`), and pushes it. The repositories'
tags are immutable: a commit's tag, once pushed, always names that image, and
pushing it again fails. A work tree with uncommitted changes is refused, since
its image would carry a commit's tag without being that commit.

Options:
  --dry-run   print every aws/docker command (prefixed with "+ ") instead of
              running it; aws, docker and git need not be installed
  --help      show this help

Environment (read from .env at the repository root when present; variables
already set in the environment win; values are never printed):
  AWS_REGION        required, e.g. eu-west-1
  AWS_ACCOUNT_ID    required, the 12-digit account that owns the repositories
  ENVIRONMENT_NAME  stack prefix, default kube-credential
  ECR_REPOSITORY    default ENVIRONMENT_NAME-SERVICE (kube-credential-issuance)
  IMAGE_TAG         default: the git short sha of HEAD; a git commit (7-40 hex
                    digits), what ecs.yml's image tag parameters accept
  DOCKER_PLATFORM   default linux/amd64 (matches ecs.yml's CpuArchitecture X86_64)
  ENV_FILE          the .env file to read, default REPO/.env
  AWS credentials   as the aws CLI finds them (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)
HELP
}

# Shows, then (unless --dry-run) runs, one command.
run() {
    show "$@"
    [ -n "$DRY_RUN" ] || "$@"
}

parse_service_args "$@"
load_env_file "${ENV_FILE:-$ROOT/.env}"
require_vars AWS_REGION AWS_ACCOUNT_ID
check_aws_names

if [ -z "$DRY_RUN" ]; then
    need=(aws docker)
    [ -n "${IMAGE_TAG:-}" ] || need+=(git)
    for tool in "${need[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool is not installed or not on PATH"
    done
fi

ENVIRONMENT_NAME=${ENVIRONMENT_NAME:-kube-credential}
REPOSITORY=${ECR_REPOSITORY:-$ENVIRONMENT_NAME-$SERVICE}
PLATFORM=${DOCKER_PLATFORM:-linux/amd64}
REGISTRY=$AWS_ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com
if [ -z "${IMAGE_TAG:-}" ]; then
    if command -v git >/dev/null 2>&1 && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        IMAGE_TAG=$(git -C "$ROOT" rev-parse --short HEAD)
        if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
            [ -n "$DRY_RUN" ] ||
                die "the work tree has uncommitted changes: an image tagged $IMAGE_TAG would not be that commit, and the tag cannot be moved later (commit first)"
            printf '%s: warning: the work tree has uncommitted changes (refused without --dry-run)\n' "$PROG" >&2
        fi
    elif [ -n "$DRY_RUN" ]; then
        IMAGE_TAG="<git-short-sha>"
    else
        die "cannot tell the git short sha: $ROOT is not a git checkout; set IMAGE_TAG"
    fi
fi
[[ $IMAGE_TAG =~ ^[0-9a-f]{7,40}$ || $IMAGE_TAG == "<git-short-sha>" ]] ||
    die "IMAGE_TAG must be a git commit, 7 to 40 hex digits (got '$IMAGE_TAG'); never latest"
IMAGE=$REGISTRY/$REPOSITORY
# ecs.yml's parameter for this service's tag (no ${SERVICE^}: macOS ships bash 3.2).
case "$SERVICE" in
    issuance) TAG_PARAMETER=IssuanceImageTag ;;
    verification) TAG_PARAMETER=VerificationImageTag ;;
esac

cd "$ROOT"
if [ -n "$DRY_RUN" ]; then
    printf '%s: dry run: the commands are printed, not run\n' "$PROG"
fi

# 1. Log in to the registry. The password goes through the pipe, never the
#    command line or this output.
printf '+ %s | %s\n' "$(quoted aws ecr get-login-password --region "$AWS_REGION")" \
    "$(quoted docker login --username AWS --password-stdin "$REGISTRY")"
if [ -z "$DRY_RUN" ]; then
    aws ecr get-login-password --region "$AWS_REGION" |
        docker login --username AWS --password-stdin "$REGISTRY" >/dev/null
fi

# 2. Build (the Dockerfile's SERVICE build argument picks the binary), 3. tag, 4. push.
run docker build --platform "$PLATFORM" --build-arg "SERVICE=$SERVICE" -t "$IMAGE:$IMAGE_TAG" .
run docker push "$IMAGE:$IMAGE_TAG"

cat <<EOF

Summary
  service     $SERVICE
  repository  $IMAGE
  tag         $IMAGE_TAG (immutable)
  platform    $PLATFORM${DRY_RUN:+
  (dry run: nothing was built or pushed)}

Next steps
  # push the other service too, then migrate and roll both onto this commit:
  IMAGE_TAG=$IMAGE_TAG scripts/deploy_ecs.sh all --wait
  # or only this service (ecs.yml's $TAG_PARAMETER), after the migration task:
  IMAGE_TAG=$IMAGE_TAG scripts/deploy_ecs.sh $SERVICE --wait
  # first deployment: docs/DEPLOYMENT.md, "First deployment, from nothing"
EOF
