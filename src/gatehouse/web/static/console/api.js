// The console's one way to the service: the public API through gatehouse-client.js,
// exactly as any other web app would use it (DESIGN.md "Browser side").

import { createClient, installErrorBoundary } from "../gatehouse-client.js";

const listeners = new Set();

/** The browser client, cookie mode; `onSessionEnded(fn)` subscribes to the end of the session. */
export const client = createClient({
  mode: "cookie",
  onSessionExpired(code) {
    for (const fn of listeners) fn(code);
  },
});

export function onSessionEnded(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Friendly message + report to /client-errors for anything uncaught, on every page. */
export function installBoundary() {
  installErrorBoundary(client);
}

/**
 * Call the API: JSON in, parsed JSON (or null for an empty answer) out. Non-2xx answers
 * throw the client's GatehouseError (`status`, `code`, `detail`, `requestId`, `retryAfter`).
 * @example const page = await call("GET", "/api/v1/admin/users?limit=20")
 */
export function call(method, path, body) {
  const init = {method};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = {"Content-Type": "application/json"};
  }
  return client.json(path, init);
}

/** GET a text resource (e.g. /metrics) through the client. */
export async function text(path) {
  const response = await client.fetch(path, {method: "GET"});
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not problem+json */ }
    const error = new Error(body.detail || `HTTP ${response.status}`);
    Object.assign(error, {status: response.status, code: body.code || "http_error", detail: body.detail,
      requestId: body.request_id || response.headers.get("x-request-id")});
    throw error;
  }
  return response.text();
}

/** The signed-in user after a page load, or null (cookie session or none). */
export async function restoreSession() {
  if (typeof client.restore === "function") {
    const restored = await client.restore();
    return restored ? restored.user : null;
  }
  try {
    return await call("GET", "/api/v1/users/profile");
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

/** The caller's permissions (from GET /auth/validate), as a Set. */
export async function permissionsOf() {
  const info = await call("GET", "/api/v1/auth/validate");
  return new Set(info.permissions || []);
}

/** A route that came with a later issue (§8) answers 404 on an older server. */
export function isMissingRoute(error) {
  return error && error.status === 404 && (error.code === "not_found" || error.code === "http_error");
}
