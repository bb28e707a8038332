// Verification throughput: setup() issues SEED_CREDENTIALS (default 500)
// credentials through the load balancer; every iteration verifies one of them.
//
//   k6 run load/verify.js
//   RATE=2000 DURATION=1m VUS=64 k6 run load/verify.js
import { check } from 'k6';
import { latencyThresholds, requireKeys, scenario, seedCredentials, verify } from './lib.js';
import { reports } from './summary.js';

export const options = {
  scenarios: { verify: scenario('verifyOne') },
  thresholds: latencyThresholds('verify'),
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
  setupTimeout: '120s',
};

export function setup() {
  requireKeys();
  return { ids: seedCredentials(parseInt(__ENV.SEED_CREDENTIALS || 500, 10)) };
}

export function verifyOne(data) {
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  const res = verify(id);
  check(res, { 'status is 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  return reports('verify', data);
}
