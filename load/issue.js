// Issuance throughput: every iteration issues a credential nobody has issued
// before, so every answer should be a 201 (a 409 would mean a test bug).
//
//   k6 run load/issue.js                              # 32 VUs for 30 s
//   RATE=500 DURATION=1m k6 run load/issue.js         # 500 requests/s
//   STAGES=10s:100,30s:800,10s:0 k6 run load/issue.js # ramp
import { check } from 'k6';
import { issue, latencyThresholds, requireKeys, scenario, uniqueCredential } from './lib.js';
import { reports } from './summary.js';

export const options = {
  scenarios: { issue: scenario('issueOne') },
  thresholds: latencyThresholds('issue'),
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  requireKeys({ verification: false });
}

export function issueOne() {
  const res = issue(uniqueCredential('issue'));
  check(res, { 'status is 201': (r) => r.status === 201 });
}

export function handleSummary(data) {
  return reports('issue', data);
}
