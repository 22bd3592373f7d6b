// installErrorBoundary: uncaught errors and rejections show a friendly role="alert"
// message (with the request id) and are reported, at most 10 a minute per tab.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient, GatehouseError, installErrorBoundary } from "../../src/gatehouse/web/static/gatehouse-client.js";
import { BASE, fakeBrowser, settle } from "./fakes.mjs";

/** Just enough DOM for the boundary: elements record their attributes. */
function fakeDocument() {
  const body = { children: [], append(el) { this.children.push(el); } };
  return {
    body,
    createElement(tag) {
      return {
        tag, className: "", hidden: false, textContent: "", attributes: {},
        setAttribute(name, value) { this.attributes[name] = value; },
        remove() { body.children.splice(body.children.indexOf(this), 1); },
      };
    },
  };
}

function errorEvent(error) {
  const event = new Event("error");
  event.error = error;
  return event;
}

function setup(t, options = {}) {
  const browser = fakeBrowser();
  const client = createClient({ baseUrl: BASE, fetch: browser.server.fetch, env: browser.tabEnv() });
  const target = new EventTarget();
  const document = fakeDocument();
  const uninstall = installErrorBoundary(client, { target, document, ...options });
  t.after(() => { uninstall(); return client.close(); });
  const reports = () => browser.server.seen.filter((r) => r.path === "/api/v1/client-errors").map((r) => JSON.parse(r.body));
  browser.server.routes.set("POST /api/v1/client-errors", () => new Response(null, { status: 202 }));
  return { target, document, reports, uninstall, server: browser.server };
}

test("an uncaught error shows a role=alert message with the request id, styled by class only", async (t) => {
  const { target, document, reports } = setup(t);
  target.dispatchEvent(errorEvent(new GatehouseError({ status: 500, code: "internal_error", detail: "boom", requestId: "req-42" })));
  await settle();
  const [element] = document.body.children;
  assert.equal(element.attributes.role, "alert");
  assert.equal(element.className, "gatehouse-error");
  assert.equal(element.hidden, false);
  assert.equal("style" in element.attributes, false); // the CSP forbids inline styles
  assert.match(element.textContent, /Something went wrong/);
  assert.match(element.textContent, /req-42/);
  assert.deepEqual(reports().map((r) => [r.message, r.request_id]), [["GatehouseError internal_error: boom", "req-42"]]);
});

test("an unhandled rejection is shown and reported with its stack", async (t) => {
  const { target, document, reports } = setup(t);
  const event = new Event("unhandledrejection");
  event.reason = new RangeError("out of range");
  target.dispatchEvent(event);
  await settle();
  assert.equal(document.body.children.length, 1);
  const [report] = reports();
  assert.equal(report.message, "RangeError: out of range");
  assert.match(report.stack, /RangeError: out of range/);
});

test("a burst of 11 errors sends 10 reports: the 11th within the minute is dropped", async (t) => {
  const { target, reports } = setup(t);
  for (let i = 1; i <= 11; i += 1) target.dispatchEvent(errorEvent(new Error(`error ${i}`)));
  await settle(50);
  assert.deepEqual(reports().map((r) => r.message), Array.from({ length: 10 }, (_, i) => `Error: error ${i + 1}`));
});

test("the limit is a sliding window: once the window has passed, reports flow again", async (t) => {
  const { target, reports } = setup(t, { interval: 200 });
  for (let i = 1; i <= 11; i += 1) target.dispatchEvent(errorEvent(new Error(`first ${i}`)));
  await settle(250);
  target.dispatchEvent(errorEvent(new Error("later")));
  await settle(50);
  assert.equal(reports().length, 11);
  assert.equal(reports().at(-1).message, "Error: later");
});

test("reports carry the page's origin and path only, never its fragment or query (reset tokens live there)", async (t) => {
  globalThis.location = { origin: "https://app.example.test", pathname: "/console/reset-password", href: "https://app.example.test/console/reset-password?x=1#token=secret" };
  t.after(() => { delete globalThis.location; });
  const { target, reports } = setup(t);
  target.dispatchEvent(errorEvent(new Error("oops")));
  await settle();
  assert.equal(reports()[0].url, "https://app.example.test/console/reset-password");
  assert.ok(!JSON.stringify(reports()).includes("secret"));
});

test("a failing report raises no new error, and uninstall stops the boundary and removes its element", async (t) => {
  const { target, document, reports, uninstall, server } = setup(t);
  server.routes.set("POST /api/v1/client-errors", () => { throw new TypeError("fetch failed"); });
  target.dispatchEvent(errorEvent(new Error("first")));
  await settle();
  uninstall();
  target.dispatchEvent(errorEvent(new Error("second")));
  await settle();
  assert.equal(document.body.children.length, 0);
  assert.deepEqual(reports().map((r) => r.message), ["Error: first"]);
});
