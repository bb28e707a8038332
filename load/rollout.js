// Issue-and-verify pairs at a fixed rate, for a rollout under load
// (scripts/check-twin.sh runs it while scripts/rollout.sh replaces every task).
//
// Each iteration issues a credential nobody has issued (201 expected) and
// verifies it (200 expected). Any failed request or any other status fails the
// run. Iterations k6 could not start in time (dropped_iterations, when the
// machine itself stalls) are reported but are not failures of the system. ROLLOUT_TAG names the credential type of
// every credential it issues ("k6 <tag>"), so the database can be asked
// afterwards whether every 201 was stored; the count of 201s is the
// `issued_201` counter of the summary (--summary-export).
//
//   RATE=200 DURATION=40s ROLLOUT_TAG=rollout-1 k6 run --summary-export out.json load/rollout.js
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { issue, issuedId, requireKeys, uniqueCredential, verify } from './lib.js';
import { reports } from './summary.js';

const TAG = __ENV.ROLLOUT_TAG || 'rollout';
const issued201 = new Counter('issued_201');
const verified200 = new Counter('verified_200');

export const options = {
  scenarios: {
    pairs: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || 200, 10),
      timeUnit: '1s',
      duration: __ENV.DURATION || '40s',
      preAllocatedVUs: parseInt(__ENV.VUS || 32, 10),
      maxVUs: parseInt(__ENV.VUS || 32, 10) * 8,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  requireKeys();
}

export default function () {
  const issued = issue(uniqueCredential(TAG));
  if (!check(issued, { 'issued: 201': (r) => r.status === 201 })) {
    return;
  }
  issued201.add(1);
  const verified = verify(issuedId(issued));
  if (check(verified, { 'verified: 200': (r) => r.status === 200 })) {
    verified200.add(1);
  }
}

export function handleSummary(data) {
  return reports('rollout', data);
}
