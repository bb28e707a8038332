// The end-of-test reports every k6 script writes (its handleSummary):
//  - on stdout, a short text summary: requests, failures, latency per endpoint,
//    dropped iterations, and every threshold with its result;
//  - REPORT_DIR/<name>.json: k6's whole summary data, for comparing runs
//    (load/k6_compare.py) or for CI;
//  - REPORT_DIR/<name>.html: the same summary as one self-contained page.
// NAME is the script's, or REPORT_NAME when set. REPORT_DIR defaults to target/k6 and must exist (k6 cannot create it;
// load/run.sh does). k6's web dashboard, with the run's time series, is
// exported beside them by load/run.sh (K6_WEB_DASHBOARD_EXPORT).

const REPORT_DIR = (__ENV.REPORT_DIR || 'target/k6').replace(/\/+$/, '');

const TREND_STATS = ['avg', 'p(50)', 'p(90)', 'p(95)', 'p(99)', 'max'];

/** Every threshold of the run: [{ metric, expr, ok }]. */
function thresholds(data) {
  const out = [];
  for (const [metric, m] of Object.entries(data.metrics)) {
    for (const [expr, result] of Object.entries(m.thresholds || {})) {
      out.push({ metric, expr, ok: result.ok });
    }
  }
  return out;
}

/** The request-duration series to show: the whole run, then one per endpoint or scenario tag. */
function durations(data) {
  return Object.entries(data.metrics)
    .filter(([name, m]) => name.startsWith('http_req_duration') && m.type === 'trend')
    .sort(([a], [b]) => a.localeCompare(b));
}

function fmt(v) {
  if (v === undefined || v === null || Number.isNaN(v)) {
    return '-';
  }
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);
}

function count(data, name) {
  const m = data.metrics[name];
  return m ? m.values.count || 0 : 0;
}

/** The figures a person looks at first, as name → value. */
export function headline(data) {
  const duration = (data.state && data.state.testRunDurationMs) / 1000 || 0;
  const failed = data.metrics.http_req_failed;
  return {
    seconds: duration,
    requests: count(data, 'http_reqs'),
    requestsPerSecond: duration ? count(data, 'http_reqs') / duration : 0,
    failedRate: failed ? failed.values.rate : 0,
    droppedIterations: count(data, 'dropped_iterations'),
    iterations: count(data, 'iterations'),
  };
}

function text(name, data) {
  const h = headline(data);
  const t = thresholds(data);
  let s = `\n${name}: ${h.requests} requests in ${fmt(h.seconds)} s (${fmt(h.requestsPerSecond)}/s), `;
  s += `${(h.failedRate * 100).toFixed(2)} % failed, ${h.droppedIterations} iterations dropped\n\n`;
  s += `  ${'latency ms'.padEnd(48)}${TREND_STATS.map((k) => k.padStart(9)).join('')}\n`;
  for (const [series, m] of durations(data)) {
    s += `  ${series.padEnd(48)}${TREND_STATS.map((k) => fmt(m.values[k]).padStart(9)).join('')}\n`;
  }
  const failed = t.filter((x) => !x.ok);
  s += `\nThresholds: ${t.length - failed.length} passed, ${failed.length} failed\n`;
  for (const x of t) {
    s += `  ${x.ok ? 'ok    ' : 'FAILED'} ${x.metric}: ${x.expr}\n`;
  }
  return s;
}

function escape(v) {
  return String(v).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

function html(name, data) {
  const h = headline(data);
  const t = thresholds(data);
  const row = (cells, tag = 'td') => `<tr>${cells.map((c) => `<${tag}>${escape(c)}</${tag}>`).join('')}</tr>`;
  const trends = durations(data)
    .map(([series, m]) => row([series, ...TREND_STATS.map((k) => fmt(m.values[k]))]))
    .join('\n');
  const checks = Object.entries(data.metrics)
    .filter(([, m]) => m.type === 'counter' || m.type === 'rate')
    .map(([metric, m]) => row([metric, m.type, fmt(m.values.count !== undefined ? m.values.count : m.values.rate), fmt(m.values.rate)]))
    .join('\n');
  const limits = t.map((x) => `<tr class="${x.ok ? 'ok' : 'bad'}"><td>${x.ok ? 'passed' : 'FAILED'}</td><td>${escape(x.metric)}</td><td>${escape(x.expr)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>k6 ${escape(name)}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
tr.ok td:first-child { color: #180; } tr.bad td:first-child { color: #c00; font-weight: bold; }
</style></head><body>
<h1>k6 ${escape(name)}</h1>
<p>${escape(h.requests)} requests in ${fmt(h.seconds)} s (${fmt(h.requestsPerSecond)}/s),
${(h.failedRate * 100).toFixed(2)} % failed, ${escape(h.droppedIterations)} iterations dropped.
Thresholds: ${t.filter((x) => x.ok).length} passed, ${t.filter((x) => !x.ok).length} failed.</p>
<h2>Thresholds</h2>
<table><tr><th>result</th><th>metric</th><th>threshold</th></tr>
${limits}
</table>
<h2>Latency (ms)</h2>
<table>${row(['series', ...TREND_STATS], 'th')}
${trends}
</table>
<h2>Counters and rates</h2>
<table>${row(['metric', 'type', 'count or rate', 'per second or rate'], 'th')}
${checks}
</table>
</body></html>
`;
}

/**
 * What a script's handleSummary returns: the text on stdout, and the JSON and
 * HTML reports named after the script. `extra` adds or replaces outputs.
 */
export function reports(name, data, extra = {}) {
  // REPORT_NAME keeps two runs of one script apart (e.g. a rollout and a restart in place).
  name = __ENV.REPORT_NAME || name;
  return Object.assign(
    {
      stdout: text(name, data),
      [`${REPORT_DIR}/${name}.json`]: JSON.stringify(data, null, 2),
      [`${REPORT_DIR}/${name}.html`]: html(name, data),
    },
    extra,
  );
}
