// The console's Operations figures, computed from Prometheus text (static/console/metrics.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import { counters, objectives, parseMetrics, quantile } from "../../src/gatehouse/web/static/console/metrics.js";

const TEXT = `
# HELP gatehouse_http_requests_total Requests
# TYPE gatehouse_http_requests_total counter
gatehouse_http_requests_total{method="GET",route="/api/v1/users/profile",status="200"} 990.0
gatehouse_http_requests_total{method="POST",route="/api/v1/auth/login",status="401"} 9.0
gatehouse_http_requests_total{method="POST",route="/api/v1/auth/login",status="500"} 1.0
gatehouse_auth_logins_total{result="success"} 999.0
gatehouse_auth_refresh_total{result="reused"} 0.0
gatehouse_auth_refresh_duration_seconds_count 4.0
gatehouse_auth_refresh_duration_seconds_sum 0.02
gatehouse_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/api/v1/users/profile"} 90.0
gatehouse_http_request_duration_seconds_bucket{le="0.5",method="GET",route="/api/v1/users/profile"} 100.0
gatehouse_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/v1/users/profile"} 100.0
gatehouse_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/metrics"} 0.0
gatehouse_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/metrics"} 50.0
weird_label{path="a \\"quoted\\" \\\\ value"} 1
`;

test("samples keep their labels, escapes included", () => {
  const samples = parseMetrics(TEXT);
  assert.equal(samples.find((s) => s.name === "weird_label").labels.path, 'a "quoted" \\ value');
  assert.equal(samples.filter((s) => s.name === "gatehouse_http_requests_total").length, 3);
});

test("the p95 interpolates inside the bucket that holds it, over /api routes only", () => {
  const samples = parseMetrics(TEXT);
  const isApi = (l) => l.route.startsWith("/api/");
  assert.ok(Math.abs(quantile(samples, "gatehouse_http_request_duration_seconds", 0.95, isApi) - 0.3) < 1e-9);
  assert.equal(quantile([], "gatehouse_http_request_duration_seconds", 0.95), null);
});

test("objectives compare live figures with the DESIGN.md targets", () => {
  const byName = Object.fromEntries(objectives(parseMetrics(TEXT)).map((o) => [o.name, o]));
  const errorRate = byName["Error rate (5xx answers)"];
  assert.equal(errorRate.value, "0.100 %");
  assert.equal(errorRate.ok, false); // 1 in 1000 is not below 0.1 %
  assert.equal(byName["Login success for correct credentials"].value, "99.9 %");
  assert.equal(byName["Token refresh latency (average)"].value, "5.0 ms");
  assert.equal(byName["Token refresh latency (average)"].ok, true);
  assert.equal(byName["API latency (p95)"].ok, false);
  assert.equal(byName["Unexpected logouts (sessions ended by refresh-token reuse)"].ok, true);
});

test("no traffic yet reads as no data, not as met or missed", () => {
  for (const objective of objectives([]).slice(0, 4)) assert.equal(objective.ok, null);
});

test("counters split refused requests (4xx) from server errors (5xx)", () => {
  assert.deepEqual(counters(parseMetrics(TEXT)), {requests: 1000, clientErrors: 9, serverErrors: 1});
});
