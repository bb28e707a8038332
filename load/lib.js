// Shared by the k6 scripts: where the system is, the API keys they send, how
// to build unique credentials, and how the executor is chosen from the environment.
import http from 'k6/http';

/** The load balancer (local twin or a real ALB); no trailing slash. */
export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');

// The API keys (scripts/up.sh writes the twin's to TWIN_DIR/keys.env): issuance
// sends ISSUER_KEY, verification VERIFIER_KEY (a verifier sees the whole
// credential), each as `Authorization: Bearer <key>` when set.
const ISSUER_KEY = __ENV.ISSUER_KEY || '';
const VERIFIER_KEY = __ENV.VERIFIER_KEY || '';
function headers(key) {
  const h = { 'Content-Type': 'application/json' };
  if (key) {
    h.Authorization = `Bearer ${key}`;
  }
  return h;
}
const ISSUE_HEADERS = headers(ISSUER_KEY);
const VERIFY_HEADERS = headers(VERIFIER_KEY);
const KEYS_HINT = 'for the local twin: set -a; . target/twin/keys.env; set +a (or TWIN_DIR/keys.env)';

/**
 * For setup(): stops the run at once, saying why, when a key the run needs is
 * not set and the system checks keys: issuance answers 401 without one, and
 * verification without one is limited to ANONYMOUS_RATE_LIMIT (20/s) per
 * address, so its /health must say "auth":"off". Sends nothing when the keys are set.
 */
export function requireKeys({ issuance = true, verification = true } = {}) {
  if (issuance && !ISSUER_KEY) {
    const res = http.post(`${BASE_URL}/issuance/credentials`, '{}', {
      headers: ISSUE_HEADERS,
      tags: { endpoint: 'probe' },
      responseCallback: http.expectedStatuses(400, 401),
    });
    if (res.status === 401) {
      throw new Error(`ISSUER_KEY is not set and ${BASE_URL}/issuance/credentials answers 401 (authentication is on): set ISSUER_KEY to an issuer's key; ${KEYS_HINT}`);
    }
  }
  if (verification && !VERIFIER_KEY) {
    const res = http.get(`${BASE_URL}/verification/health`, { tags: { endpoint: 'probe' } });
    if (!/"auth":"off"/.test(res.body || '')) {
      throw new Error(`VERIFIER_KEY is not set and ${BASE_URL}/verification does not say "auth":"off" (authentication is on: without a key it serves ${__ENV.ANONYMOUS_RATE_LIMIT || 20} requests/s per address, with the public view): set VERIFIER_KEY to a verifier's key; ${KEYS_HINT}`);
    }
  }
}

// Each VU runs this module in its own runtime: the start time plus the VU and
// iteration numbers make every credential unique, also across repeated runs,
// so issuance never measures 409s by accident.
const RUN = `${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;

/** A credential no one has issued yet. */
export function uniqueCredential(tag = 'load', n = undefined) {
  // __ITER does not exist in setup(); callers there pass their own counter.
  const id = `${RUN}-${__VU}-${n === undefined ? __ITER : `s${n}`}`;
  return {
    name: `k6 ${tag} ${id}`,
    email: `k6+${id}@example.com`,
    credentialType: `k6 ${tag}`,
    metadata: { source: 'k6', run: RUN },
  };
}

/** POST /issuance/credentials. */
export function issue(credential, tags = {}) {
  return http.post(`${BASE_URL}/issuance/credentials`, JSON.stringify(credential), {
    headers: ISSUE_HEADERS,
    tags: Object.assign({ endpoint: 'issue' }, tags),
  });
}

/** POST /verification/credentials. */
export function verify(id, tags = {}) {
  return http.post(`${BASE_URL}/verification/credentials`, JSON.stringify({ id }), {
    headers: VERIFY_HEADERS,
    tags: Object.assign({ endpoint: 'verify' }, tags),
  });
}

/** Items per bulk request (BULK_SIZE, default 100). */
export const BULK_SIZE = parseInt(__ENV.BULK_SIZE || 100, 10);

/** POST /issuance/credentials/batch with these credentials. */
export function issueBulk(credentials, tags = {}) {
  return http.post(`${BASE_URL}/issuance/credentials/batch`, JSON.stringify({ credentials }), {
    headers: ISSUE_HEADERS,
    tags: Object.assign({ endpoint: 'issue-bulk' }, tags),
  });
}

/** POST /verification/credentials/batch for these ids. */
export function verifyBulk(ids, tags = {}) {
  return http.post(`${BASE_URL}/verification/credentials/batch`, JSON.stringify({ credentials: ids.map((id) => ({ id })) }), {
    headers: VERIFY_HEADERS,
    tags: Object.assign({ endpoint: 'verify-bulk' }, tags),
  });
}

/** How many of a bulk answer's items have this status (0 when it is not a 200 with results). */
export function bulkItemsWith(res, status) {
  try {
    return res.status === 200 ? res.json('results').filter((r) => r.status === status).length : 0;
  } catch (_) {
    return 0;
  }
}

/** The credential id of a 201 response, or undefined. */
export function issuedId(res) {
  try {
    return res.status === 201 ? res.json('credential.id') : undefined;
  } catch (_) {
    return undefined;
  }
}

/** Issues `count` credentials (in batches) and returns their ids: verification's working set. */
export function seedCredentials(count) {
  const ids = [];
  let i = 0;
  while (ids.length < count) {
    const batch = [];
    for (let j = 0; j < 50 && ids.length + batch.length < count; j++, i++) {
      const c = uniqueCredential('seed', i);
      batch.push(['POST', `${BASE_URL}/issuance/credentials`, JSON.stringify(c), { headers: ISSUE_HEADERS, tags: { endpoint: 'seed' } }]);
    }
    for (const res of http.batch(batch)) {
      const id = issuedId(res);
      if (!id) {
        throw new Error(`seeding failed: ${res.status} ${res.body}`);
      }
      ids.push(id);
    }
  }
  return ids;
}

/**
 * The scenario the environment asks for:
 *  - RATE=<n>               constant-arrival-rate, n iterations/s for DURATION
 *  - STAGES=<dur:rate,...>  ramping-arrival-rate, e.g. "10s:100,30s:500,10s:0"
 *  - otherwise              constant-vus, VUS virtual users for DURATION
 * VUS (default 32) is also the pre-allocated pool of the arrival-rate executors.
 */
export function scenario(exec, defaults = {}) {
  const vus = parseInt(__ENV.VUS || defaults.vus || 32, 10);
  const duration = __ENV.DURATION || defaults.duration || '30s';
  if (__ENV.STAGES) {
    const stages = __ENV.STAGES.split(',').map((s) => {
      const [d, target] = s.split(':');
      return { duration: d.trim(), target: parseInt(target, 10) };
    });
    return { executor: 'ramping-arrival-rate', exec, startRate: 0, timeUnit: '1s', stages, preAllocatedVUs: vus, maxVUs: vus * 4 };
  }
  if (__ENV.RATE) {
    return {
      executor: 'constant-arrival-rate', exec, rate: parseInt(__ENV.RATE, 10), timeUnit: '1s',
      duration, preAllocatedVUs: vus, maxVUs: vus * 4,
    };
  }
  return { executor: 'constant-vus', exec, vus, duration };
}

/**
 * Latency and error thresholds for the scenario named `name` (so setup()'s
 * seeding requests do not count), overridable with P95_MS, P99_MS and
 * MAX_ERROR_RATE. Arrival-rate runs also fail when k6 had to drop iterations:
 * the requested rate was not reached.
 */
export function latencyThresholds(name) {
  const t = {
    [`http_req_duration{scenario:${name}}`]: [`p(95)<${__ENV.P95_MS || 250}`, `p(99)<${__ENV.P99_MS || 500}`],
    [`http_req_failed{scenario:${name}}`]: [`rate<=${__ENV.MAX_ERROR_RATE || 0}`],
    checks: ['rate==1'],
  };
  if (__ENV.RATE || __ENV.STAGES) {
    t.dropped_iterations = ['count==0'];
  }
  return t;
}
