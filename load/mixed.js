// A mix of new issuances and verifications of existing credentials, as
// production sees it. ISSUE_SHARE (default 0.2) of the iterations issue.
//
//   k6 run load/mixed.js
//   RATE=1000 ISSUE_SHARE=0.5 k6 run load/mixed.js
import { check } from 'k6';
import { issue, latencyThresholds, requireKeys, scenario, seedCredentials, uniqueCredential, verify } from './lib.js';
import { reports } from './summary.js';

const ISSUE_SHARE = parseFloat(__ENV.ISSUE_SHARE || 0.2);

export const options = {
  scenarios: { mixed: scenario('mixed') },
  thresholds: Object.assign(latencyThresholds('mixed'), {
    'http_req_duration{endpoint:issue}': [`p(99)<${__ENV.P99_MS || 500}`],
    'http_req_duration{endpoint:verify}': [`p(99)<${__ENV.P99_MS || 500}`],
  }),
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
  setupTimeout: '120s',
};

export function setup() {
  requireKeys();
  return { ids: seedCredentials(parseInt(__ENV.SEED_CREDENTIALS || 500, 10)) };
}

export function mixed(data) {
  if (Math.random() < ISSUE_SHARE) {
    check(issue(uniqueCredential('mixed')), { 'issued: 201': (r) => r.status === 201 });
  } else {
    const id = data.ids[Math.floor(Math.random() * data.ids.length)];
    check(verify(id), { 'verified: 200': (r) => r.status === 200 });
  }
}

export function handleSummary(data) {
  return reports('mixed', data);
}
