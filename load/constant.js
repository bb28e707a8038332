// One service at a constant arrival rate, straight at one task (load/limit.sh
// runs it to find the highest rate a task serves with p99 ≤ 25 ms). Open loop:
// requests are due at RATE/s whatever the answers do, so a slow task shows up
// as latency (and as dropped iterations when k6 runs out of VUs), not as a
// lower rate.
//
//   SERVICE=verification IDS_FILE=target/limit/ids.txt RATE=3000 DURATION=5s \
//     BASE_URL=http://127.0.0.1:3902 k6 run --summary-export out.json load/constant.js
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { BASE_URL, uniqueCredential } from './lib.js';

const SERVICE = __ENV.SERVICE || 'verification';
// One copy for all VUs (a copy per VU cost more CPU than the requests).
const IDS = new SharedArray('ids', () =>
  SERVICE === 'verification' ? open(__ENV.IDS_FILE || '../target/limit/ids.txt').split('\n').filter((l) => l) : []);
const HEADERS = { headers: { 'Content-Type': 'application/json' } };
// Enough for 5,000 requests/s at 40 ms each: k6 starts more VUs mid-run only slowly,
// dropping iterations meanwhile.
const VUS = parseInt(__ENV.VUS || 200, 10);

export const options = {
  scenarios: {
    constant: {
      executor: 'constant-arrival-rate',
      rate: parseInt(__ENV.RATE || 1000, 10),
      timeUnit: '1s',
      duration: __ENV.DURATION || '5s',
      preAllocatedVUs: VUS,
      maxVUs: VUS * 4,
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'max'],
  discardResponseBodies: true,
};

export default function () {
  if (SERVICE === 'verification') {
    const id = IDS[Math.floor(Math.random() * IDS.length)];
    const r = http.post(`${BASE_URL}/verification/credentials`, JSON.stringify({ id }), HEADERS);
    check(r, { 'verified: 200': (res) => res.status === 200 });
  } else {
    const r = http.post(`${BASE_URL}/issuance/credentials`, JSON.stringify(uniqueCredential('constant')), HEADERS);
    check(r, { 'issued: 201': (res) => res.status === 201 });
  }
}
