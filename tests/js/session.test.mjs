// The session ends only on the codes that end it (API.md §2), once per tab; logout
// reaches every tab; restore, MFA and the cookie-mode token_missing rule.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient, GatehouseError } from "../../src/gatehouse/web/static/gatehouse-client.js";
import { BASE, fakeBrowser, problem, settle } from "./fakes.mjs";

const PROFILE = "/api/v1/users/profile";

function tab(t, browser, options = {}) {
  const expired = [];
  const client = createClient({
    baseUrl: BASE, fetch: browser.server.fetch, env: browser.tabEnv(), lockTimeout: 400,
    retry: { limit: 2, backoff: 5, backoffLimit: 10 },
    onSessionExpired: (code) => expired.push(code), ...options,
  });
  t.after(() => client.close());
  return { client, expired };
}

for (const code of ["refresh_invalid", "refresh_expired", "refresh_reused", "session_revoked"]) {
  test(`a refresh answered ${code} ends the session: onSessionExpired fires once, user is null`, async (t) => {
    const browser = fakeBrowser();
    const { client, expired } = tab(t, browser);
    await client.login("ada@example.test", "pw");
    browser.server.refreshAnswer = () => problem(401, code);
    browser.server.expireAccess();
    const statuses = await Promise.all([1, 2, 3].map(() => client.fetch(PROFILE).then((r) => r.status)));
    assert.deepEqual(statuses, [401, 401, 401]);
    await client.fetch(PROFILE); // after the end: no refresh, no second notice
    assert.deepEqual(expired, [code]);
    assert.equal(client.user, null);
    assert.equal(browser.server.count("POST", "/api/v1/auth/refresh"), 1);
  });
}

test("session_revoked on an ordinary request ends the session once, in this tab and the others", async (t) => {
  const browser = fakeBrowser();
  const a = tab(t, browser);
  const b = tab(t, browser);
  await a.client.login("ada@example.test", "pw");
  await settle();
  browser.server.revoked = true;
  await Promise.all([a.client.fetch(PROFILE), a.client.fetch(PROFILE)]);
  await settle();
  assert.deepEqual(a.expired, ["session_revoked"]);
  assert.deepEqual(b.expired, ["session_revoked"]);
});

for (const [label, answer] of [
  ["403 forbidden", () => problem(403, "forbidden")],
  ["403 csrf_failed", () => problem(403, "csrf_failed")],
  ["429 rate_limited", () => problem(429, "rate_limited", { retry_after: 0 }, { "retry-after": "0" })],
  ["500 internal_error", () => problem(500, "internal_error")],
  ["503 service_unavailable", () => problem(503, "service_unavailable", { retry_after: 0 }, { "retry-after": "0" })],
  ["a network error", () => { throw new TypeError("fetch failed"); }],
]) {
  test(`${label} on a request or on the refresh never ends the session`, async (t) => {
    const browser = fakeBrowser();
    const { client, expired } = tab(t, browser);
    await client.login("ada@example.test", "pw");
    browser.server.routes.set("GET /api/v1/admin/users", answer);
    await assert.rejects(client.json("/api/v1/admin/users"), GatehouseError);
    browser.server.refreshAnswer = answer;
    browser.server.expireAccess();
    await assert.rejects(client.json(PROFILE), GatehouseError);
    assert.deepEqual(expired, []);
    assert.equal(client.user?.id, "u1");
    browser.server.refreshAnswer = null; // the server is back: the same session goes on
    assert.equal((await client.json(PROFILE)).id, "u1");
    assert.deepEqual(expired, []);
  });
}

test("token_missing in cookie mode is treated like token_expired while the tab holds a session", async (t) => {
  const browser = fakeBrowser();
  const { client } = tab(t, browser);
  await client.login("ada@example.test", "pw");
  browser.server.expireAccess(); // the access cookie is gone: the server sees no credentials
  assert.equal((await client.json(PROFILE)).id, "u1");
  assert.equal(browser.server.counts.success, 1);
});

test("token_missing without a session is just an answer: no refresh, no notice", async (t) => {
  const browser = fakeBrowser();
  const { client, expired } = tab(t, browser);
  const response = await client.fetch(PROFILE);
  assert.equal(response.status, 401);
  assert.equal(browser.server.count("POST", "/api/v1/auth/refresh"), 0);
  assert.deepEqual(expired, []);
});

test("token_missing in token mode is not refreshed (token mode always sends its token)", async (t) => {
  const browser = fakeBrowser();
  const { client } = tab(t, browser, { mode: "token" });
  browser.server.routes.set("GET /api/v1/x", () => problem(401, "token_missing"));
  await client.login("ada@example.test", "pw");
  assert.equal((await client.fetch("/api/v1/x")).status, 401);
  assert.equal(browser.server.count("POST", "/api/v1/auth/refresh"), 0);
});

test("logout: the other tab fires onSessionExpired('session_revoked') within 1 s, the calling tab does not", async (t) => {
  const browser = fakeBrowser();
  const a = tab(t, browser);
  const b = tab(t, browser);
  const c = tab(t, browser);
  await a.client.login("ada@example.test", "pw");
  await settle();
  const heard = new Promise((resolve) => {
    const started = Date.now();
    const poll = setInterval(() => {
      if (b.expired.length && c.expired.length) {
        clearInterval(poll);
        resolve(Date.now() - started);
      }
    }, 5);
  });
  await a.client.logout();
  const took = await heard;
  assert.ok(took < 1000, `took ${took} ms`);
  assert.deepEqual(a.expired, []);
  assert.deepEqual(b.expired, ["session_revoked"]);
  assert.deepEqual(c.expired, ["session_revoked"]);
  assert.equal(a.client.user, null);
  assert.equal(b.client.user, null);
});

test("logoutAll ends the session in every tab; the calling tab shows no notice", async (t) => {
  const browser = fakeBrowser();
  const a = tab(t, browser);
  const b = tab(t, browser);
  await a.client.login("ada@example.test", "pw");
  await settle();
  await a.client.logoutAll();
  await settle();
  assert.equal(browser.server.count("POST", "/api/v1/auth/logout-all"), 1);
  assert.deepEqual(a.expired, []);
  assert.deepEqual(b.expired, ["session_revoked"]);
});

test("logoutAll reaches tabs of the same user holding their own token-mode sessions", async (t) => {
  const browser = fakeBrowser();
  const a = tab(t, browser, { mode: "token" });
  const b = tab(t, browser, { mode: "token" });
  await a.client.login("ada@example.test", "pw");
  // The fake holds one session at a time: the second tab's sign-in gets its tokens too.
  browser.server.routes.set("POST /api/v1/auth/login", () => browser.server.answerTokens(false));
  await b.client.login("ada@example.test", "pw");
  await a.client.logoutAll();
  await settle();
  assert.deepEqual(a.expired, []);
  assert.deepEqual(b.expired, ["session_revoked"]);
});

test("logout with an expired access token refreshes first, then logs out", async (t) => {
  const browser = fakeBrowser();
  const { client, expired } = tab(t, browser);
  await client.login("ada@example.test", "pw");
  browser.server.expireAccess();
  await client.logout();
  assert.equal(browser.server.counts.success, 1);
  assert.equal(browser.server.revoked, true);
  assert.deepEqual(expired, []);
});

test("mfa_required throws a GatehouseError with the mfaToken; verifyMfa signs in with it", async (t) => {
  const browser = fakeBrowser();
  const { client } = tab(t, browser);
  browser.server.routes.set("POST /api/v1/auth/login", () => problem(401, "mfa_required", { mfa_token: "mfa-1", methods: ["totp", "recovery_code"] }));
  const error = await client.login("ada@example.test", "pw").catch((e) => e);
  assert.ok(error instanceof GatehouseError);
  assert.deepEqual([error.status, error.code, error.mfaToken, error.methods], [401, "mfa_required", "mfa-1", ["totp", "recovery_code"]]);
  assert.equal(client.user, null);
  const { user } = await client.verifyMfa("mfa-1", "123456");
  assert.equal(user.id, "u1");
  const sent = browser.server.seen.at(-1);
  assert.equal(sent.path, "/api/v1/auth/login/mfa");
  assert.deepEqual(JSON.parse(sent.body), { mfa_token: "mfa-1", code: "123456" });
  assert.equal(sent.headers.get("x-auth-mode"), "cookie");
});

test("login failures are GatehouseErrors with the server's code, detail and request id", async (t) => {
  const browser = fakeBrowser();
  const { client } = tab(t, browser);
  browser.server.routes.set("POST /api/v1/auth/login", () => problem(429, "login_throttled", { retry_after: 4 }, { "retry-after": "4" }));
  const error = await client.login("ada@example.test", "pw").catch((e) => e);
  assert.deepEqual([error.status, error.code, error.retryAfter, error.requestId], [429, "login_throttled", 4, "req-login_throttled"]);
  assert.equal(browser.server.count("POST", "/api/v1/auth/login"), 1); // a POST is never retried
});

test("restore after a page load: the cookies' session gives {user}; no cookie gives null without a request", async (t) => {
  const browser = fakeBrowser();
  const first = tab(t, browser);
  await first.client.login("ada@example.test", "pw");
  const reloaded = tab(t, browser); // a new page of the same browser
  assert.deepEqual(await reloaded.client.restore(), { user: (await first.client.json(PROFILE)) });
  const other = fakeBrowser(); // another browser: no cookies
  const stranger = tab(t, other);
  assert.equal(await stranger.client.restore(), null);
  assert.equal(other.server.seen.length, 0);
});

test("restore of a session that ended while the page was closed answers null and shows no notice", async (t) => {
  const browser = fakeBrowser();
  const first = tab(t, browser);
  await first.client.login("ada@example.test", "pw");
  browser.server.expireAccess();
  browser.server.refreshAnswer = () => problem(401, "refresh_expired");
  const reloaded = tab(t, browser);
  assert.equal(await reloaded.client.restore(), null);
  assert.deepEqual(reloaded.expired, []);
});
