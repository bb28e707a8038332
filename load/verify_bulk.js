// Bulk verification throughput: setup() issues SEED_CREDENTIALS (default 500)
// credentials; every iteration verifies BULK_SIZE (default 100) of them in one
// POST /verification/credentials/batch, so every item should be a 200;
// `credentials` counts them.
//
//   k6 run load/verify_bulk.js                     # 8 VUs for 30 s
//   BULK_SIZE=1000 VUS=4 k6 run load/verify_bulk.js
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { BULK_SIZE, bulkItemsWith, latencyThresholds, requireKeys, scenario, seedCredentials, verifyBulk } from './lib.js';
import { reports } from './summary.js';

const credentials = new Counter('credentials');

export const options = {
  scenarios: { verify_bulk: scenario('verifyMany', { vus: 8 }) },
  thresholds: Object.assign(latencyThresholds('verify_bulk'), {
    [`http_req_duration{scenario:verify_bulk}`]: [`p(95)<${__ENV.P95_MS || 1000}`, `p(99)<${__ENV.P99_MS || 2000}`],
  }),
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'],
  setupTimeout: '120s',
};

export function setup() {
  requireKeys();
  return { ids: seedCredentials(parseInt(__ENV.SEED_CREDENTIALS || 500, 10)) };
}

export function verifyMany(data) {
  const ids = [];
  for (let i = 0; i < BULK_SIZE; i++) {
    ids.push(data.ids[Math.floor(Math.random() * data.ids.length)]);
  }
  const res = verifyBulk(ids);
  const verified = bulkItemsWith(res, 200);
  credentials.add(verified);
  check(res, { 'every item is a 200': () => verified === BULK_SIZE });
}

export function handleSummary(data) {
  return reports('verify_bulk', data);
}
