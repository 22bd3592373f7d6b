// The request pipeline: retries (backoff, Retry-After, total cap), hooks and their order,
// CSRF on unsafe cookie-mode requests only, the Bearer header in token mode, base URL.
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { createClient, GatehouseError } from "../../src/gatehouse/web/static/gatehouse-client.js";
import { BASE, fakeBrowser, problem } from "./fakes.mjs";

const flush = async (rounds = 20) => {
  for (let i = 0; i < rounds; i += 1) await new Promise((resolve) => setImmediate(resolve));
};

function make(t, options = {}, browser = fakeBrowser()) {
  const client = createClient({ baseUrl: BASE, fetch: browser.server.fetch, env: browser.tabEnv(), ...options });
  t.after(() => client.close());
  return { client, server: browser.server };
}

test("a 503 with Retry-After: 2 is retried after exactly 2 s (fake timers), then answers", async (t) => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  t.after(() => mock.timers.reset());
  const { client, server } = make(t);
  let calls = 0;
  server.routes.set("GET /api/v1/things", () => (++calls === 1
    ? problem(503, "service_unavailable", { retry_after: 2 }, { "retry-after": "2" })
    : new Response('{"ok":true}', { headers: { "content-type": "application/json" } })));
  const answer = client.json("/api/v1/things");
  await flush();
  assert.equal(calls, 1);
  mock.timers.tick(1999);
  await flush();
  assert.equal(calls, 1, "retried before Retry-After elapsed");
  mock.timers.tick(1);
  await flush();
  assert.equal(calls, 2);
  assert.deepEqual(await answer, { ok: true });
});

test("429 is retried with its Retry-After; a Retry-After beyond the total cap is not waited for", async (t) => {
  const { client, server } = make(t, { retry: { maxTotal: 1000 } });
  let calls = 0;
  server.routes.set("GET /api/v1/slow", () => (++calls === 1
    ? problem(429, "rate_limited", { retry_after: 0 }, { "retry-after": "0" })
    : new Response("{}", { headers: { "content-type": "application/json" } })));
  await client.json("/api/v1/slow");
  assert.equal(calls, 2);
  server.routes.set("GET /api/v1/busy", () => problem(503, "service_unavailable", { retry_after: 60 }, { "retry-after": "60" }));
  const started = Date.now();
  const error = await client.json("/api/v1/busy").catch((e) => e);
  assert.ok(Date.now() - started < 500);
  assert.deepEqual([error.status, error.code, error.retryAfter], [503, "service_unavailable", 60]);
  assert.equal(server.count("GET", "/api/v1/busy"), 1);
});

test("network errors, 502 and 504 are retried with backoff for GET, and the limit holds", async (t) => {
  const { client, server } = make(t, { retry: { limit: 3, backoff: 5, backoffLimit: 20 } });
  const answers = [() => { throw new TypeError("fetch failed"); }, () => problem(502, "http_error"), () => problem(504, "http_error"),
    () => new Response("[]", { headers: { "content-type": "application/json" } })];
  let calls = 0;
  server.routes.set("GET /api/v1/flaky", () => answers[calls++]());
  assert.deepEqual(await client.json("/api/v1/flaky"), []);
  assert.equal(calls, 4);
  calls = 0;
  server.routes.set("GET /api/v1/down", () => { calls += 1; throw new TypeError("fetch failed"); });
  const error = await client.json("/api/v1/down").catch((e) => e);
  assert.ok(error instanceof GatehouseError);
  assert.deepEqual([error.status, error.code], [0, "network_error"]);
  assert.equal(calls, 4); // the first try and 3 retries
});

test("a POST is not retried on a network error or a 503", async (t) => {
  const { client, server } = make(t, { retry: { backoff: 1 } });
  server.routes.set("POST /api/v1/things", () => problem(503, "service_unavailable", { retry_after: 0 }, { "retry-after": "0" }));
  assert.equal((await client.fetch("/api/v1/things", { method: "POST" })).status, 503);
  server.routes.set("POST /api/v1/other", () => { throw new TypeError("fetch failed"); });
  await assert.rejects(client.fetch("/api/v1/other", { method: "POST" }), { code: "network_error" });
  assert.equal(server.count("POST", "/api/v1/things") + server.count("POST", "/api/v1/other"), 2);
});

test("a try that takes longer than `timeout` fails with code timeout", async (t) => {
  const { client, server } = make(t, { timeout: 50, retry: false });
  server.routes.set("GET /api/v1/hang", () => new Promise(() => {}));
  await assert.rejects(client.fetch("/api/v1/hang"), { name: "GatehouseError", code: "timeout", status: 0 });
});

test("hooks run in order: request hooks, response hooks, error hooks before the throw; use() returns their remover", async (t) => {
  const { client, server } = make(t);
  const log = [];
  server.routes.set("GET /api/v1/seen", (request) => new Response(JSON.stringify({ tag: request.headers.get("x-tag") }), { headers: { "content-type": "application/json" } }));
  server.routes.set("GET /api/v1/missing", () => problem(404, "not_found"));
  const remove = client.use({
    request(request, state) {
      log.push(`request 1 (retry ${state.retryCount})`);
      const headers = new Headers(request.headers);
      headers.set("X-Tag", "one");
      return new Request(request, { headers });
    },
    response() { log.push("response 1"); },
    error(error) { log.push(`error 1 ${error.code}`); },
  });
  client.use({
    request(request) { log.push(`request 2 sees ${request.headers.get("x-tag")}`); },
    response(response) {
      log.push("response 2");
      if (!response.ok) return undefined; // keep error answers as they are
      return new Response(JSON.stringify({ replaced: true, status: response.status }), { headers: { "content-type": "application/json" } });
    },
    error(error) {
      log.push("error 2");
      return new GatehouseError({ status: error.status, code: "renamed" });
    },
  });
  assert.deepEqual(await client.json("/api/v1/seen"), { replaced: true, status: 200 });
  assert.deepEqual(server.seen.at(-1).headers.get("x-tag"), "one");
  const error = await client.json("/api/v1/missing").catch((e) => { log.push("caught"); return e; });
  assert.equal(error.code, "renamed");
  assert.deepEqual(log, ["request 1 (retry 0)", "request 2 sees one", "response 1", "response 2",
    "request 1 (retry 0)", "request 2 sees one", "response 1", "response 2", "error 1 not_found", "error 2", "caught"]);
  remove();
  log.length = 0;
  await client.json("/api/v1/seen");
  assert.deepEqual(log, ["request 2 sees null", "response 2"]);
});

test("a request hook that returns a Response answers without the network", async (t) => {
  const { client, server } = make(t);
  client.use({ request: () => new Response('{"cached":true}', { headers: { "content-type": "application/json" } }) });
  assert.deepEqual(await client.json("/api/v1/anything"), { cached: true });
  assert.equal(server.seen.length, 0);
});

test("onError sees every thrown error, after the error hooks", async (t) => {
  const seen = [];
  const { client, server } = make(t, { onError: (error) => seen.push(error.code) });
  server.routes.set("GET /api/v1/admin/users", () => problem(403, "forbidden"));
  await assert.rejects(client.json("/api/v1/admin/users"), { code: "forbidden", status: 403 });
  assert.deepEqual(seen, ["forbidden"]);
});

test("cookie mode sends X-CSRF-Token (the gh_csrf cookie) on POST, PUT, PATCH, DELETE only", async (t) => {
  const { client, server } = make(t);
  await client.login("ada@example.test", "pw");
  for (const method of ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]) {
    server.routes.set(`${method} /api/v1/echo`, () => new Response(null, { status: 204 }));
    await client.fetch("/api/v1/echo", { method });
  }
  const sent = Object.fromEntries(server.seen.filter((r) => r.path === "/api/v1/echo").map((r) => [r.method, r.headers.get("x-csrf-token")]));
  assert.deepEqual(sent, { GET: null, HEAD: null, OPTIONS: null, POST: "csrf-token-1", PUT: "csrf-token-1", PATCH: "csrf-token-1", DELETE: "csrf-token-1" });
  assert.equal(server.seen.find((r) => r.path === "/api/v1/echo").headers.get("authorization"), null);
});

test("token mode sends the Bearer token and never the CSRF header, even with a gh_csrf cookie around", async (t) => {
  const { client, server } = make(t, { mode: "token" });
  await client.login("ada@example.test", "pw");
  server.jar.set("gh_csrf", "left-over");
  server.routes.set("POST /api/v1/echo", () => new Response(null, { status: 204 }));
  await client.fetch("/api/v1/echo", { method: "POST" });
  const sent = server.seen.at(-1);
  assert.equal(sent.headers.get("authorization"), `Bearer ${server.access}`);
  assert.equal(sent.headers.get("x-csrf-token"), null);
  assert.equal(JSON.parse(server.seen.find((r) => r.path === "/api/v1/auth/login").body).email, "ada@example.test");
  assert.equal(server.seen.find((r) => r.path === "/api/v1/auth/login").headers.get("x-auth-mode"), null);
});

test("relative inputs resolve against baseUrl (its path kept); absolute URLs are used as given", async (t) => {
  const { client, server } = make(t, { baseUrl: "https://auth.example.test/gatehouse/" });
  await client.fetch("/api/v1/users/profile");
  await client.fetch("api/v1/users/profile");
  await client.fetch("https://other.example.test/x");
  assert.deepEqual(server.seen.map((r) => r.url), [
    "https://auth.example.test/gatehouse/api/v1/users/profile",
    "https://auth.example.test/gatehouse/api/v1/users/profile",
    "https://other.example.test/x",
  ]);
});

test("json() answers null for 204 and throws GatehouseError with the problem's fields otherwise", async (t) => {
  const { client, server } = make(t);
  server.routes.set("DELETE /api/v1/thing", () => new Response(null, { status: 204 }));
  assert.equal(await client.json("/api/v1/thing", { method: "DELETE" }), null);
  server.routes.set("GET /api/v1/proxy", () => new Response("<html>bad gateway</html>", { status: 418, headers: { "x-request-id": "rid-9" } }));
  const error = await client.json("/api/v1/proxy").catch((e) => e);
  assert.deepEqual([error.status, error.code, error.requestId], [418, "http_error", "rid-9"]);
});

test("credentials never go to another origin: no Bearer, no CSRF token, no refresh on its 401", async (t) => {
  for (const mode of ["cookie", "token"]) {
    const { client, server } = make(t, { mode });
    await client.login("ada@example.test", "pw");
    server.routes.set("POST /elsewhere", () => problem(401, "token_expired"));
    const response = await client.fetch("https://evil.example.test/elsewhere", { method: "POST" });
    assert.equal(response.status, 401);
    const sent = server.seen.at(-1);
    assert.equal(sent.url, "https://evil.example.test/elsewhere");
    assert.equal(sent.headers.get("authorization"), null, mode);
    assert.equal(sent.headers.get("x-csrf-token"), null, mode);
    assert.equal(server.count("POST", "/api/v1/auth/refresh"), 0, mode);
    assert.equal(client.user?.id, "u1");
  }
});
