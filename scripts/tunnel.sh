#!/usr/bin/env bash
# Opens an SSH tunnel from 127.0.0.1:LOCAL_DB_PORT to the RDS instance through a
# bastion host, for running a service or psql on a laptop against the shared
# database. Runs in the foreground; Ctrl-C closes it.
#
#   scripts/tunnel.sh
#   scripts/tunnel.sh --dry-run      # print the ssh command, run nothing
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROG=scripts/tunnel.sh
# shellcheck source=scripts/lib/cli.sh
source "$ROOT/scripts/lib/cli.sh"

usage() {
    cat <<'HELP'
usage: scripts/tunnel.sh [--dry-run] [--help]

Runs  ssh -N -L LOCAL_DB_PORT:RDS_CLUSTER_HOST:RDS_PORT BASTION_USER@BASTION_HOST -i BASTION_KEY
and prints the DATABASE_URL (password elided) that reaches the database
through it. The RDS instance is not publicly accessible; the bastion is an
EC2 instance in a public subnet of the VPC whose security group may reach the
database's on 5432 (see docs/DEPLOYMENT.md, "Local development").

Options:
  --dry-run   print the ssh command (prefixed with "+ ") instead of running it;
              ssh need not be installed
  --help      show this help

Environment (read from .env at the repository root when present; variables
already set in the environment win; values are never printed):
  BASTION_HOST       required, the bastion's public DNS name or IP
  BASTION_USER       default ec2-user
  BASTION_KEY        required, the private key file for BASTION_USER
  RDS_CLUSTER_HOST   required, the RDS endpoint (DatabaseEndpoint output of rds.yml)
  RDS_PORT           the database's port on RDS, default 5432 (DB_PORT is not
                     used here: in .env it may already point at the tunnel)
  LOCAL_DB_PORT      where the tunnel listens on 127.0.0.1, default 5433
  DB_NAME            for the printed URL, default credentials
  RDS_CLUSTER_USERNAME  for the printed URL, default kcadmin
  ENV_FILE           the .env file to read, default REPO/.env
HELP
}




DRY_RUN=""
for arg in "$@"; do
    case "$arg" in
        --dry-run | -n) DRY_RUN=1 ;;
        --help | -h)
            usage
            exit 0
            ;;
        *) die "unknown argument: $arg (try --help)" 2 ;;
    esac
done

load_env_file "${ENV_FILE:-$ROOT/.env}"

missing=()
for var in BASTION_HOST BASTION_KEY RDS_CLUSTER_HOST; do
    [ -n "${!var:-}" ] || missing+=("$var")
done
[ ${#missing[@]} -eq 0 ] || die "missing variable(s): ${missing[*]} (set them in the environment or in .env; see --help)"

case "$RDS_CLUSTER_HOST" in
    127.* | localhost | ::1)
        die "RDS_CLUSTER_HOST is $RDS_CLUSTER_HOST: set it to the RDS endpoint, the tunnel's far end (the services then use 127.0.0.1:LOCAL_DB_PORT)"
        ;;
esac
BASTION_USER=${BASTION_USER:-ec2-user}
RDS_PORT=${RDS_PORT:-5432}
LOCAL_DB_PORT=${LOCAL_DB_PORT:-5433}
DB_NAME=${DB_NAME:-credentials}
DB_USER=${RDS_CLUSTER_USERNAME:-kcadmin}
for var in RDS_PORT LOCAL_DB_PORT; do
    if ! [[ ${!var} =~ ^[0-9]{1,5}$ ]] || [ "${!var}" -lt 1 ] || [ "${!var}" -gt 65535 ]; then
        die "$var must be a port number from 1 to 65535 (got '${!var}')"
    fi
done
if [ -z "$DRY_RUN" ]; then
    command -v ssh >/dev/null 2>&1 || die "missing tool: ssh is not installed or not on PATH"
    [ -r "$BASTION_KEY" ] || die "BASTION_KEY: cannot read the key file $BASTION_KEY"
fi

ssh_cmd=(ssh -N -L "$LOCAL_DB_PORT:$RDS_CLUSTER_HOST:$RDS_PORT" "$BASTION_USER@$BASTION_HOST" -i "$BASTION_KEY"
    -o ExitOnForwardFailure=yes -o ServerAliveInterval=30)

# The tunnel ends at 127.0.0.1, so the certificate's host name (the RDS
# endpoint) cannot match: use require (encrypted, rds.force_ssl=1 is satisfied)
# rather than verify-full here.
cat <<EOF
Tunnel: 127.0.0.1:$LOCAL_DB_PORT -> $RDS_CLUSTER_HOST:$RDS_PORT via $BASTION_USER@$BASTION_HOST

Once it is open, point a service, psql or the tests at it (password elided):
  DATABASE_URL=postgres://$DB_USER:<password>@127.0.0.1:$LOCAL_DB_PORT/$DB_NAME?sslmode=require
(DATABASE_URL wins over the RDS_CLUSTER_* variables, so RDS_CLUSTER_HOST in .env can stay
the RDS endpoint this script needs. sslmode=require, not verify-full: the certificate names
the RDS endpoint, not 127.0.0.1.)
The master password is in the secret RDS manages and rotates (the rds stack's MasterSecretArn):
  aws secretsmanager get-secret-value --query SecretString --output text --secret-id "\$(aws cloudformation describe-stacks \\
    --stack-name ${ENVIRONMENT_NAME:-kube-credential}-rds --query "Stacks[0].Outputs[?OutputKey=='MasterSecretArn'].OutputValue" --output text)"

EOF
printf '+ %s\n' "$(quoted "${ssh_cmd[@]}")"
if [ -n "$DRY_RUN" ]; then
    printf '%s: dry run: ssh was not started\n' "$PROG"
    exit 0
fi
printf 'tunnel open while this runs; Ctrl-C closes it\n'
exec "${ssh_cmd[@]}"
