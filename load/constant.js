// One service at a constant arrival rate, straight at one task (load/limit.sh
// runs it to find the highest rate a task serves with p99 ≤ 25 ms). Open loop:
// requests are due at RATE/s whatever the answers do, so a slow task shows up
// as latency (and as iterations k6 drops when it runs out of VUs), not as a
// lower rate.
//
// The first WARMUP_MS (2000) are a warm-up at the same rate, tagged
// phase:warmup: every VU opens its connection then, a burst that would
// otherwise be the p99 of a short run. The summary's `{phase:measure}`
// sub-metrics cover the DURATION after it.
//
//   SERVICE=verification IDS_FILE=target/limit/ids.txt RATE=3000 DURATION=5 \
//     BASE_URL=http://127.0.0.1:3902 k6 run --summary-export out.json load/constant.js
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { BASE_URL, uniqueCredential } from './lib.js';

const SERVICE = __ENV.SERVICE || 'verification';
// One copy for all VUs (a copy per VU cost more CPU than the requests).
const IDS = new SharedArray('ids', () =>
  SERVICE === 'verification' ? open(__ENV.IDS_FILE || '../target/limit/ids.txt').split('\n').filter((l) => l) : []);
const HEADERS = { headers: { 'Content-Type': 'application/json' } };
// Enough for 5,000 requests/s at 40 ms each: k6 starts more VUs mid-run only slowly,
// dropping iterations meanwhile.
const VUS = parseInt(__ENV.VUS || 200, 10);
const WARMUP_MS = parseInt(__ENV.WARMUP_MS || 2000, 10);
const MEASURE = '{phase:measure}';

export const options = {
  scenarios: {
    constant: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || 1000, 10),
      timeUnit: '1s',
      duration: `${WARMUP_MS / 1000 + parseFloat(__ENV.DURATION || '5')}s`,
      preAllocatedVUs: VUS,
      maxVUs: VUS * 4,
    },
  },
  // Always true: they only make k6 report the measured phase on its own.
  thresholds: {
    [`http_req_duration${MEASURE}`]: ['max>=0'],
    [`http_reqs${MEASURE}`]: ['count>=0'],
    [`http_req_failed${MEASURE}`]: ['rate>=0'],
    [`checks${MEASURE}`]: ['rate>=0'],
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

export default function () {
  const tags = { phase: Date.now() - exec.scenario.startTime < WARMUP_MS ? 'warmup' : 'measure' };
  const params = Object.assign({ tags }, HEADERS);
  if (SERVICE === 'verification') {
    const id = IDS[Math.floor(Math.random() * IDS.length)];
    const r = http.post(`${BASE_URL}/verification/credentials`, JSON.stringify({ id }), params);
    check(r, { 'verified: 200': (res) => res.status === 200 }, tags);
  } else {
    const r = http.post(`${BASE_URL}/issuance/credentials`, JSON.stringify(uniqueCredential('constant')), params);
    check(r, { 'issued: 201': (res) => res.status === 201 }, tags);
  }
}
