// Single-flight refresh: one refresh per expiry within a tab, across tabs, across the
// clients of one tab; the cross-tab lock is bounded and never needed for correctness.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "../../src/gatehouse/web/static/gatehouse-client.js";
import { BASE, fakeBrowser, memoryStorage, problem, settle } from "./fakes.mjs";
import { OUTCOME_WAIT_MS } from "../../src/gatehouse/web/static/client/refresh.js";

const PROFILE = "/api/v1/users/profile";

function tabClient(browser, options = {}) {
  return createClient({ baseUrl: BASE, fetch: browser.server.fetch, env: browser.tabEnv(), lockTimeout: 400, ...options });
}

test("N concurrent token_missing answers in one tab make one refresh and N retries (cookie mode)", async () => {
  const browser = fakeBrowser();
  const client = tabClient(browser);
  await client.login("ada@example.test", "pw");
  browser.server.expireAccess();
  const answers = await Promise.all(Array.from({ length: 8 }, () => client.json(PROFILE)));
  assert.equal(answers.length, 8);
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
  assert.equal(browser.server.count("GET", PROFILE), 16); // 8 failed tries, 8 retries
  await client.close();
});

test("N concurrent token_expired answers in token mode make one refresh; retries carry the new token", async () => {
  const browser = fakeBrowser();
  const client = tabClient(browser, { mode: "token" });
  await client.login("ada@example.test", "pw");
  browser.server.expireAccess();
  await Promise.all(Array.from({ length: 5 }, () => client.json(PROFILE)));
  assert.equal(browser.server.counts.success, 1);
  const retried = browser.server.seen.filter((r) => r.path === PROFILE).slice(5);
  assert.deepEqual(retried.map((r) => r.headers.get("authorization")), Array(5).fill(`Bearer ${browser.server.access}`));
  await client.close();
});

test("two tabs sharing locks, storage and a channel make one refresh for one expiry", async () => {
  const browser = fakeBrowser();
  browser.server.refreshDelay = 50;
  const first = tabClient(browser);
  const second = tabClient(browser);
  await first.login("ada@example.test", "pw");
  await settle();
  browser.server.expireAccess();
  await Promise.all([first.json(PROFILE), second.json(PROFILE), first.json(PROFILE), second.json(PROFILE)]);
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
  assert.equal(second.user?.id, "u1"); // the login in the other tab reached this one
  await Promise.all([first.close(), second.close()]);
});

test("two tabs without Web Locks (localStorage lease fallback) make one refresh for one expiry", async () => {
  const browser = fakeBrowser({ locks: false });
  browser.server.refreshDelay = 50;
  const first = tabClient(browser);
  const second = tabClient(browser);
  await first.login("ada@example.test", "pw");
  await settle();
  browser.server.expireAccess();
  await Promise.all([first.json(PROFILE), second.json(PROFILE)]);
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
  await Promise.all([first.close(), second.close()]);
});

test("two clients created in one tab (a framework mounting twice) share one refresh", async () => {
  const browser = fakeBrowser();
  const env = browser.tabEnv();
  const first = createClient({ baseUrl: BASE, fetch: browser.server.fetch, env });
  const second = createClient({ baseUrl: BASE, fetch: browser.server.fetch, env });
  await first.login("ada@example.test", "pw");
  assert.equal(second.user?.id, "u1");
  browser.server.expireAccess();
  await Promise.all([first.json(PROFILE), second.json(PROFILE), second.json(PROFILE)]);
  assert.equal(browser.server.counts.success, 1);
  await Promise.all([first.close(), second.close()]);
});

test("two token-mode clients in one tab share the in-memory tokens and one refresh", async () => {
  const browser = fakeBrowser();
  const env = browser.tabEnv();
  const first = createClient({ baseUrl: BASE, mode: "token", fetch: browser.server.fetch, env });
  const second = createClient({ baseUrl: BASE, mode: "token", fetch: browser.server.fetch, env });
  await first.login("ada@example.test", "pw");
  browser.server.expireAccess();
  await Promise.all([first.json(PROFILE), second.json(PROFILE)]);
  assert.equal(browser.server.counts.success, 1);
  await Promise.all([first.close(), second.close()]);
});

test("a lock held forever by a dead tab delays a refresh by the lock timeout only, then the tab refreshes alone", async () => {
  const browser = fakeBrowser();
  const client = tabClient(browser, { lockTimeout: 300 });
  await client.login("ada@example.test", "pw");
  browser.locks.holdForever(`gatehouse:${BASE}:cookie:refresh`);
  browser.server.expireAccess();
  const started = Date.now();
  const profile = await client.json(PROFILE);
  const waited = Date.now() - started;
  assert.equal(profile.id, "u1");
  assert.equal(browser.server.counts.success, 1);
  assert.ok(waited >= 250 && waited < 2000, `waited ${waited} ms`);
  await client.close();
});

test("tabs that time out on a Web Lock held by a frozen tab meet on the lease: still one refresh", async (t) => {
  const browser = fakeBrowser();
  browser.server.refreshDelay = 100;
  const tabs = [1, 2, 3].map(() => tabClient(browser, { lockTimeout: 1500 }));
  t.after(() => Promise.all(tabs.map((tab) => tab.close())));
  await tabs[0].login("ada@example.test", "pw");
  await settle();
  browser.locks.holdForever(`gatehouse:${BASE}:cookie:refresh`);
  browser.server.expireAccess();
  await Promise.all(tabs.map((tab) => tab.json(PROFILE)));
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
  // The next expiry: the frozen holder still holds the Web Lock, so the tabs go straight to the lease.
  browser.server.expireAccess();
  const started = Date.now();
  await Promise.all(tabs.map((tab) => tab.json(PROFILE)));
  assert.ok(Date.now() - started < 1200, `waited ${Date.now() - started} ms`); // not the 1.5 s lock timeout
  assert.deepEqual(browser.server.counts, { success: 2, grace: 0, login: 1 });
});

test("sign-in and refresh cannot hang on a lock that is never granted", async () => {
  const browser = fakeBrowser();
  // A lock manager that never grants anything and ignores nothing: like a tab lock that hung sign-in elsewhere.
  const env = { ...browser.tabEnv(), locks: { request: (_n, options) => new Promise((_r, reject) => options.signal.addEventListener("abort", () => reject(options.signal.reason))), query: async () => ({ held: [{ name: "x", clientId: "ghost" }] }) } };
  const client = createClient({ baseUrl: BASE, fetch: browser.server.fetch, env, lockTimeout: 300 });
  const deadline = (ms) => new Promise((_, reject) => setTimeout(() => reject(new Error(`hung for ${ms} ms`)), ms).unref());
  await Promise.race([client.login("ada@example.test", "pw"), deadline(2000)]);
  assert.equal(await Promise.race([client.refresh(), deadline(2000)]), true);
  browser.server.expireAccess();
  assert.equal((await Promise.race([client.json(PROFILE), deadline(2000)])).id, "u1");
  assert.equal(browser.server.counts.success, 2);
  await client.close();
});

test("a tab waiting for the lock adopts the other tab's outcome as soon as it is broadcast", async () => {
  const browser = fakeBrowser();
  browser.server.refreshDelay = 200;
  const first = tabClient(browser, { lockTimeout: 5000 });
  const second = tabClient(browser, { lockTimeout: 5000 });
  await first.login("ada@example.test", "pw");
  await settle();
  const started = Date.now();
  const both = await Promise.all([first.refresh(), (async () => { await settle(30); return second.refresh(); })()]);
  assert.deepEqual(both, [true, true]);
  assert.equal(browser.server.counts.success, 1);
  assert.ok(Date.now() - started < 1500);
  await Promise.all([first.close(), second.close()]);
});

test("the proactive refresh runs before expiry, once for two tabs, and no request sees a 401", async (t) => {
  const browser = fakeBrowser();
  // 2 s tokens are refreshed 0.5-0.75 s before they expire: at 1.25-1.5 s and 2.5-3 s after
  // login, the third not before 3.75 s; so exactly 2 refreshes in 3.4 s, whichever tab sends them.
  browser.server.expiresIn = 2;
  const first = tabClient(browser);
  const second = tabClient(browser);
  t.after(() => Promise.all([first.close(), second.close()]));
  await first.login("ada@example.test", "pw");
  // Access tokens expire on the fake server after their lifetime, as on a real one.
  const issued = new Map();
  const originalIssue = browser.server.issue.bind(browser.server);
  browser.server.issue = () => {
    originalIssue();
    const token = browser.server.access;
    setTimeout(() => { if (browser.server.access === token) browser.server.expireAccess(); }, 2000).unref();
    issued.set(token, Date.now());
  };
  await new Promise((resolve) => setTimeout(resolve, 3400));
  const statuses = [];
  for (const client of [first, second]) statuses.push((await client.fetch(PROFILE)).status);
  assert.deepEqual(statuses, [200, 200]);
  assert.equal(browser.server.counts.grace, 0);
  assert.deepEqual(browser.server.counts, { success: 2, grace: 0, login: 1 });
  const unauthorized = browser.server.seen.filter((r) => r.path === PROFILE).length;
  assert.equal(unauthorized, 2);
  await Promise.all([first.close(), second.close()]);
});

test("a proactive refresh that fails (503) reports nothing and is tried again after a cool-down", async (t) => {
  const browser = fakeBrowser();
  browser.server.expiresIn = 2; // refreshed 1.25-1.5 s after sign-in, then every 1.25-1.5 s
  const errors = [];
  const client = tabClient(browser, { retry: false, onError: (error) => errors.push(error.code) });
  t.after(() => client.close());
  await client.login("ada@example.test", "pw");
  browser.server.refreshAnswer = () => problem(503, "service_unavailable", { retry_after: 1 }, { "retry-after": "1" });
  const refreshes = () => browser.server.count("POST", "/api/v1/auth/refresh");
  const until = async (check, ms) => {
    for (const end = Date.now() + ms; !check() && Date.now() < end;) await settle(10);
  };
  await until(() => refreshes() === 1, 3000);
  assert.equal(refreshes(), 1);
  const failedAt = Date.now();
  browser.server.refreshAnswer = null;
  await until(() => browser.server.counts.success === 1, 4000); // the retry, 2 s after the failure
  assert.equal(browser.server.counts.success, 1);
  assert.ok(Date.now() - failedAt >= 1800, `retried after ${Date.now() - failedAt} ms`);
  assert.deepEqual(errors, []);
  assert.equal(client.user?.id, "u1");
});

test("token mode with localStorage: tabs share one session and one refresh; retries read the new token", async (t) => {
  const browser = fakeBrowser();
  const tabs = [1, 2].map(() => tabClient(browser, { mode: "token", storage: "localStorage" }));
  t.after(() => Promise.all(tabs.map((tab) => tab.close())));
  await tabs[0].login("ada@example.test", "pw");
  assert.deepEqual(await tabs[1].restore(), { user: await tabs[0].json(PROFILE) });
  browser.server.refreshDelay = 50;
  browser.server.expireAccess();
  await Promise.all([tabs[0].json(PROFILE), tabs[1].json(PROFILE), tabs[1].json(PROFILE)]);
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
  const last = browser.server.seen.filter((r) => r.path === PROFILE).at(-1);
  assert.equal(last.headers.get("authorization"), `Bearer ${browser.server.access}`);
  assert.ok(![...browser.localStorage.data.keys()].some((key) => key.endsWith(":state") && browser.localStorage.data.get(key).includes("refresh-")),
    "the shared state holds no token");
});

/**
 * A browser whose tabs hear each other late, as Chromium's renderer processes do under load:
 * each tab reads its own copy of localStorage, and another tab's writes and BroadcastChannel
 * messages reach it `lag` ms later (in the order they were made). Cookies and Web Locks live
 * in the browser process and are seen at once.
 */
function laggyBrowser({ lag, locks = true }) {
  const browser = fakeBrowser({ locks });
  const views = []; // every tab's copy of localStorage
  const channels = new Map(); // name -> Set of open channels
  const tabEnv = browser.tabEnv.bind(browser);
  browser.tabEnv = () => {
    const env = tabEnv();
    const view = memoryStorage();
    for (const [key, value] of browser.localStorage.data) view.data.set(key, value);
    const later = (change) => {
      for (const other of views) if (other !== view) setTimeout(() => change(other), lag);
    };
    const storage = {
      getItem: view.getItem,
      setItem(key, value) { view.setItem(key, value); browser.localStorage.setItem(key, value); later((other) => other.setItem(key, value)); },
      removeItem(key) { view.removeItem(key); browser.localStorage.removeItem(key); later((other) => other.removeItem(key)); },
    };
    views.push(view);
    class LaggyChannel {
      constructor(name) {
        this.name = name;
        this.onmessage = null;
        if (!channels.has(name)) channels.set(name, new Set());
        channels.get(name).add(this);
      }
      postMessage(data) {
        for (const other of channels.get(this.name)) {
          if (other !== this) setTimeout(() => other.onmessage?.({ data: structuredClone(data) }), lag);
        }
      }
      close() { channels.get(this.name).delete(this); }
    }
    return { ...env, localStorage: storage, BroadcastChannel: LaggyChannel };
  };
  return browser;
}

test("a tab queued on the Web Lock hears the holder's outcome late (lag > hold): still one refresh", async (t) => {
  // The holder publishes its outcome, holds the lock 150 ms more and lets go; the queued tab gets
  // the lock while the outcome is still 400 ms away. It must wait for it, not refresh again.
  const browser = laggyBrowser({ lag: 400 });
  browser.server.refreshDelay = 100;
  const tabs = [1, 2, 3].map(() => tabClient(browser, { lockTimeout: 3000 }));
  t.after(() => Promise.all(tabs.map((tab) => tab.close())));
  await tabs[0].login("ada@example.test", "pw");
  await settle(500); // the sign-in reached every tab
  browser.server.expireAccess();
  const started = Date.now();
  const answers = await Promise.all(tabs.map((tab) => tab.json(PROFILE)));
  assert.deepEqual(answers.map((answer) => answer.id), ["u1", "u1", "u1"]);
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
  assert.ok(Date.now() - started < 100 + 150 + OUTCOME_WAIT_MS, `took ${Date.now() - started} ms`);
});

test("tabs on the localStorage lease that hear each other late still make one refresh", async (t) => {
  // Without Web Locks the lease travels with the outcome through the same (late) storage.
  const browser = laggyBrowser({ lag: 300, locks: false });
  browser.server.refreshDelay = 500;
  const tabs = [1, 2].map(() => tabClient(browser, { lockTimeout: 3000 }));
  t.after(() => Promise.all(tabs.map((tab) => tab.close())));
  await tabs[0].login("ada@example.test", "pw");
  await settle(400);
  browser.server.expireAccess();
  const first = tabs[0].json(PROFILE);
  await settle(350); // the first tab's lease has reached the second one
  const answers = await Promise.all([first, tabs[1].json(PROFILE)]);
  assert.deepEqual(answers.map((answer) => answer.id), ["u1", "u1"]);
  assert.deepEqual(browser.server.counts, { success: 1, grace: 0, login: 1 });
});

test("a Web Lock whose holder died without a word delays the refresh by the outcome wait at most", async (t) => {
  // A crashed tab's lock is released by the browser, but no outcome and no `released` message follow.
  const browser = fakeBrowser();
  const client = tabClient(browser, { lockTimeout: 3000 });
  t.after(() => client.close());
  await client.login("ada@example.test", "pw");
  const name = `gatehouse:${BASE}:cookie:refresh`;
  browser.locks.holdForever(name, "crashed-tab");
  setTimeout(() => browser.locks.release(name), 200);
  browser.server.expireAccess();
  const started = Date.now();
  assert.equal((await client.json(PROFILE)).id, "u1");
  const waited = Date.now() - started;
  assert.equal(browser.server.counts.success, 1);
  assert.ok(waited >= 200 + OUTCOME_WAIT_MS - 50 && waited < 200 + OUTCOME_WAIT_MS + 500, `waited ${waited} ms`);
});

test("an uncontended refresh does not wait for any other tab's outcome", async (t) => {
  const browser = fakeBrowser();
  const client = tabClient(browser, { lockTimeout: 3000 });
  t.after(() => client.close());
  await client.login("ada@example.test", "pw");
  browser.server.expireAccess();
  const started = Date.now();
  assert.equal((await client.json(PROFILE)).id, "u1");
  assert.ok(Date.now() - started < 100, `took ${Date.now() - started} ms`);
  assert.equal(browser.server.counts.success, 1);
});
