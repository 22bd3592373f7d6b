// Prometheus text format → samples, and the figures the Operations page shows
// (the SLO targets of DESIGN.md "Targets"), computed in the browser from /metrics.

/** [{name, labels: {..}, value}] from Prometheus text exposition format. */
export function parseMetrics(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    const labelText = match[3] || "";
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let m;
    while ((m = re.exec(labelText)) !== null) {
      labels[m[1]] = m[2].replace(/\\n/g, "\n").replace(/\\"/g, "\"").replace(/\\\\/g, "\\");
    }
    const value = Number(match[4]);
    if (!Number.isNaN(value)) samples.push({name: match[1], labels, value});
  }
  return samples;
}

export function total(samples, name, keep = () => true) {
  let sum = 0;
  for (const s of samples) if (s.name === name && keep(s.labels)) sum += s.value;
  return sum;
}

const isApi = (labels) => (labels.route || "").startsWith("/api/");
const isLogin = (labels) => labels.route === "/api/v1/auth/login" || labels.route === "/api/auth/login";

/** The q-quantile of a histogram (buckets summed over the series `keep` accepts), in seconds. */
export function quantile(samples, name, q, keep = () => true) {
  const buckets = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !keep(s.labels)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) || 0) + s.value);
  }
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const count = buckets.get(Infinity) || 0;
  if (!count) return null;
  const rank = q * count;
  let prevBound = 0;
  let prevCount = 0;
  for (const bound of bounds) {
    const cumulative = buckets.get(bound);
    if (cumulative >= rank) {
      if (bound === Infinity) return prevBound;
      const inBucket = cumulative - prevCount;
      return inBucket ? prevBound + (bound - prevBound) * ((rank - prevCount) / inBucket) : bound;
    }
    prevBound = bound;
    prevCount = cumulative;
  }
  return prevBound;
}

/** The objectives of DESIGN.md "Targets", each with its live figure since the server started. */
export function objectives(samples) {
  const requests = total(samples, "gatehouse_http_requests_total");
  const errors = total(samples, "gatehouse_http_requests_total", (l) => Number(l.status) >= 500);
  const logins = total(samples, "gatehouse_auth_logins_total", (l) => l.result === "success");
  const loginFailures = total(samples, "gatehouse_http_requests_total", (l) => isLogin(l) && Number(l.status) >= 500);
  const refreshCount = total(samples, "gatehouse_auth_refresh_duration_seconds_count");
  const refreshSum = total(samples, "gatehouse_auth_refresh_duration_seconds_sum");
  const p95 = quantile(samples, "gatehouse_http_request_duration_seconds", 0.95, isApi);
  const reused = total(samples, "gatehouse_auth_refresh_total", (l) => l.result === "reused");
  const pct = (x) => (x === 0 ? "0 %" : `${(x * 100).toFixed(x < 0.01 ? 3 : 1)} %`);
  const ms = (s) => `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms`;
  return [
    {
      name: "Error rate (5xx answers)", target: "< 0.1 %",
      value: requests ? pct(errors / requests) : "no requests yet",
      ok: requests ? errors / requests < 0.001 : null,
      basis: `${errors} of ${requests} requests`,
    },
    {
      name: "Login success for correct credentials", target: "> 99.9 %",
      value: logins + loginFailures ? pct(logins / (logins + loginFailures)) : "no logins yet",
      ok: logins + loginFailures ? logins / (logins + loginFailures) > 0.999 : null,
      basis: `${logins} successful, ${loginFailures} failed by a server error`,
    },
    {
      name: "Token refresh latency (average)", target: "< 100 ms",
      value: refreshCount ? ms(refreshSum / refreshCount) : "no refreshes yet",
      ok: refreshCount ? refreshSum / refreshCount < 0.1 : null,
      basis: `${refreshCount} refreshes`,
    },
    {
      name: "API latency (p95)", target: "< 200 ms",
      value: p95 === null ? "no API calls yet" : ms(p95),
      ok: p95 === null ? null : p95 < 0.2,
      basis: "estimated from the latency histogram of /api routes",
    },
    {
      name: "Unexpected logouts (sessions ended by refresh-token reuse)", target: "0",
      value: String(reused),
      ok: reused === 0,
      basis: "refresh-token reuse ends the whole session",
    },
  ];
}

/** Cumulative request and error counters, for the charts' per-second rates. */
export function counters(samples) {
  return {
    requests: total(samples, "gatehouse_http_requests_total"),
    clientErrors: total(samples, "gatehouse_http_requests_total", (l) => Number(l.status) >= 400 && Number(l.status) < 500),
    serverErrors: total(samples, "gatehouse_http_requests_total", (l) => Number(l.status) >= 500),
  };
}
