// The console's service worker (static/console/push-worker.js), run in a VM context whose
// `self` records the listeners: what a push shows and where a click leads. (The browser test
// drives its push handler in Chromium; a notification click cannot be driven there.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const SOURCE = readFileSync(new URL("../../src/gatehouse/web/static/console/push-worker.js", import.meta.url), "utf8");

/** A worker global with `windows` (url strings) open; records what the worker did. */
function worker(windows = []) {
  const did = {shown: [], focused: [], opened: [], closed: 0};
  const listeners = {};
  const clients = windows.map((url) => ({url, focus: async () => { did.focused.push(url); return clients[0]; }}));
  const self = {
    addEventListener: (type, fn) => { listeners[type] = fn; },
    skipWaiting: () => {},
    registration: {showNotification: async (title, options) => { did.shown.push({title, ...options}); }},
    clients: {
      claim: async () => {},
      matchAll: async (options) => {
        assert.deepEqual({...options}, {type: "window", includeUncontrolled: true});
        return clients;
      },
      openWindow: async (url) => { did.opened.push(url); return null; },
    },
  };
  vm.runInNewContext(SOURCE, {self, URL, Date, Number, String});
  async function fire(type, event) {
    let done;
    listeners[type]({...event, waitUntil: (promise) => { done = promise; }});
    await done;
  }
  return {did, fire};
}

const data = (text) => ({
  json: () => JSON.parse(text),
  text: () => text,
});

test("a push shows the payload's title and body, tagged by event type and dated by `at`", async () => {
  const {did, fire} = worker();
  await fire("push", {data: data(JSON.stringify({type: "password.changed", title: "Password changed",
    body: "Your password was changed.", at: "2026-12-02T19:00:00Z"}))});
  assert.equal(did.shown.length, 1);
  const [shown] = did.shown;
  assert.equal(shown.title, "Password changed");
  assert.equal(shown.body, "Your password was changed.");
  assert.equal(shown.tag, "password.changed");
  assert.equal(shown.timestamp, Date.UTC(2026, 11, 2, 19));
});

test("a push that is not JSON is still shown, as its text", async () => {
  const {did, fire} = worker();
  await fire("push", {data: data("plain words")});
  assert.equal(did.shown[0].title, "Gatehouse");
  assert.equal(did.shown[0].body, "plain words");
  assert.equal(did.shown[0].tag, "gatehouse");
});

test("a click focuses an open console tab and navigates nowhere", async () => {
  const {did, fire} = worker(["http://gh.test/docs", "http://gh.test/console/admin/users"]);
  const notification = {close: () => { did.closed += 1; }, data: {}};
  await fire("notificationclick", {notification});
  assert.deepEqual(did.focused, ["http://gh.test/console/admin/users"]);
  assert.deepEqual(did.opened, []);
  assert.equal(did.closed, 1);
});

test("with no console tab, a click opens the account page, whatever the payload said", async () => {
  const {did, fire} = worker(["http://gh.test/docs"]);
  const notification = {close: () => {}, data: {url: "https://evil.example/"}};
  await fire("notificationclick", {notification});
  assert.deepEqual(did.focused, []);
  assert.deepEqual(did.opened, ["/console/account"]);
});
