// Proves that the load balancer spreads requests evenly over every task.
//
// Issues and verifies credentials, attributes every response to the task that
// answered (its X-Worker-Id), and fails unless every expected task answered
// and each one's share is within SHARE_TOLERANCE (default 0.10, i.e. ±10
// percentage points) of an even split. Prints a per-task table and writes it as
// JSON (SUMMARY_JSON, default target/k6/distribution-summary.json), beside the
// reports every script writes (load/summary.js).
//
//   k6 run load/distribution.js                                  # the local twin
//   BASE_URL=http://my-alb.example.com EXPECTED_ISSUANCE_TASKS=2 k6 run load/distribution.js
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { BASE_URL, issue, issuedId, requireKeys, uniqueCredential, verify } from './lib.js';
import { reports } from './summary.js';

const GROUPS = {
  issuance: parseInt(__ENV.EXPECTED_ISSUANCE_TASKS || 3, 10),
  verification: parseInt(__ENV.EXPECTED_VERIFICATION_TASKS || 3, 10),
};
const TOLERANCE = parseFloat(__ENV.SHARE_TOLERANCE || 0.1);

// Metrics must exist before the test starts, so tasks get slots 0..N-1 (in the
// order setup() discovers them) and every slot its own share metric. A slot
// that no task fills, or a task outside the slots, fails the run.
const metrics = {};
const thresholds = { checks: ['rate==1'], http_req_failed: ['rate<0.01'] };
for (const [group, expected] of Object.entries(GROUPS)) {
  const even = 1 / expected;
  metrics[group] = {
    requests: new Counter(`${group}_requests`),
    duration: new Trend(`${group}_duration`, true),
    stranger: new Counter(`${group}_unexpected_task`),
    shares: [],
  };
  thresholds[`${group}_unexpected_task`] = ['count==0'];
  for (let slot = 0; slot < expected; slot++) {
    metrics[group].shares.push(new Rate(`${group}_share_${slot}`));
    thresholds[`${group}_share_${slot}`] = [`rate>=${(even - TOLERANCE).toFixed(4)}`, `rate<=${(even + TOLERANCE).toFixed(4)}`];
    // Referenced here so the summary carries each task's count and p95.
    thresholds[`${group}_requests{slot:${slot}}`] = ['count>0'];
    thresholds[`${group}_duration{slot:${slot}}`] = [`p(95)<${__ENV.P95_MS || 1000}`];
  }
}

export const options = {
  scenarios: {
    distribution: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || 8, 10),
      duration: __ENV.DURATION || '15s',
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

/** Finds the tasks behind each path by asking the group's health check until no new one shows. */
export function setup() {
  requireKeys();
  const tasks = {};
  for (const [group, expected] of Object.entries(GROUPS)) {
    const seen = new Set();
    for (let i = 0; i < expected * 10; i++) {
      const res = http.get(`${BASE_URL}/${group}/health`, { tags: { endpoint: 'discover' } });
      const worker = res.headers['X-Worker-Id'];
      if (res.status === 200 && worker) {
        seen.add(worker);
      }
    }
    tasks[group] = Array.from(seen).sort();
    console.log(`${group}: found ${tasks[group].length} of ${expected} expected tasks: ${tasks[group].join(', ')}`);
  }
  return { tasks };
}

function record(group, res, tasks) {
  const worker = res.headers['X-Worker-Id'] || 'none';
  const slot = tasks[group].indexOf(worker);
  const m = metrics[group];
  const tags = { worker, slot: slot >= 0 ? String(slot) : 'unexpected' };
  m.requests.add(1, tags);
  m.duration.add(res.timings.duration, tags);
  if (slot < 0 || slot >= m.shares.length) {
    m.stranger.add(1, tags);
  }
  m.shares.forEach((share, i) => share.add(i === slot));
}

export default function (data) {
  const issued = issue(uniqueCredential('distribution'));
  check(issued, { 'issued: 201': (r) => r.status === 201 });
  record('issuance', issued, data.tasks);
  const id = issuedId(issued);
  if (id) {
    const verified = verify(id);
    check(verified, { 'verified: 200': (r) => r.status === 200 });
    record('verification', verified, data.tasks);
  }
}

export function handleSummary(data) {
  const tasks = (data.setup_data && data.setup_data.tasks) || {};
  const report = { baseUrl: BASE_URL, tolerance: TOLERANCE, groups: {} };
  let text = `\nRequests per task (even split ±${(TOLERANCE * 100).toFixed(0)} points):\n`;
  for (const [group, expected] of Object.entries(GROUPS)) {
    const total = (data.metrics[`${group}_requests`] || { values: { count: 0 } }).values.count;
    const rows = [];
    for (let slot = 0; slot < expected; slot++) {
      const count = ((data.metrics[`${group}_requests{slot:${slot}}`] || {}).values || {}).count || 0;
      const p95 = ((data.metrics[`${group}_duration{slot:${slot}}`] || {}).values || {})['p(95)'];
      const share = total ? count / total : 0;
      const ok = Math.abs(share - 1 / expected) <= TOLERANCE + 1e-9 && count > 0;
      rows.push({ task: (tasks[group] || [])[slot] || `(missing slot ${slot})`, requests: count, share, p95Ms: count && p95 !== undefined ? p95 : null, ok });
    }
    const strangers = ((data.metrics[`${group}_unexpected_task`] || {}).values || {}).count || 0;
    const answered = rows.filter((r) => r.requests > 0).length;
    report.groups[group] = { expectedTasks: expected, answeredTasks: answered, total, unexpected: strangers, tasks: rows };
    text += `\n  ${group}: ${total} requests, ${answered}/${expected} tasks answered\n`;
    text += `    ${'task'.padEnd(36)} ${'requests'.padStart(9)} ${'share'.padStart(7)} ${'p95 ms'.padStart(8)}\n`;
    for (const r of rows) {
      const p95 = r.p95Ms === null ? '-' : r.p95Ms.toFixed(2);
      text += `    ${r.task.padEnd(36)} ${String(r.requests).padStart(9)} ${(r.share * 100).toFixed(1).padStart(6)}% ${p95.padStart(8)} ${r.ok ? 'ok' : 'OUT OF RANGE'}\n`;
    }
    if (strangers) {
      text += `    ${strangers} responses came from tasks not seen at setup\n`;
    }
  }
  // k6 replaces its own summary with this one, so say which thresholds failed.
  const failed = [];
  let passed = 0;
  for (const [name, metric] of Object.entries(data.metrics)) {
    for (const [expr, result] of Object.entries(metric.thresholds || {})) {
      if (result.ok) {
        passed++;
      } else {
        failed.push(`${name}: ${expr}`);
      }
    }
  }
  report.thresholds = { passed, failed };
  text += `\nThresholds: ${passed} passed, ${failed.length} failed${failed.map((f) => `\n  FAILED ${f}`).join('')}\n`;
  const file = __ENV.SUMMARY_JSON || 'target/k6/distribution-summary.json';
  return reports('distribution', data, { stdout: `${text}\n`, [file]: JSON.stringify(report, null, 2) });
}
