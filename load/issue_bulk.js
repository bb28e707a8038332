// Bulk issuance throughput: every iteration issues BULK_SIZE (default 100)
// credentials nobody has issued before in one POST /issuance/credentials/batch,
// so every item should be a 201; `credentials` counts them.
//
//   k6 run load/issue_bulk.js                      # 8 VUs for 30 s
//   BULK_SIZE=1000 VUS=4 k6 run load/issue_bulk.js
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { BULK_SIZE, bulkItemsWith, issueBulk, latencyThresholds, requireKeys, scenario, uniqueCredential } from './lib.js';
import { reports } from './summary.js';

const credentials = new Counter('credentials');

export const options = {
  scenarios: { issue_bulk: scenario('issueMany', { vus: 8 }) },
  thresholds: Object.assign(latencyThresholds('issue_bulk'), {
    [`http_req_duration{scenario:issue_bulk}`]: [`p(95)<${__ENV.P95_MS || 1000}`, `p(99)<${__ENV.P99_MS || 2000}`],
  }),
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  requireKeys({ verification: false });
}

export function issueMany() {
  const batch = [];
  for (let i = 0; i < BULK_SIZE; i++) {
    batch.push(uniqueCredential('bulk', `${__ITER}-${i}`));
  }
  const res = issueBulk(batch);
  const issued = bulkItemsWith(res, 201);
  credentials.add(issued);
  check(res, { 'every item is a 201': () => issued === BULK_SIZE });
}

export function handleSummary(data) {
  return reports('issue_bulk', data);
}
