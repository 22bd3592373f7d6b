// Fakes for the browser client's unit tests: a Gatehouse server behind `fetch`
// (cookie jar included), navigator.locks, localStorage, and "tabs" that share
// what a browser's tabs share (cookies, locks, localStorage, BroadcastChannel).
import { setTimeout as sleep } from "node:timers/promises";

export const BASE = "https://auth.example.test";
export const USER = { id: "u1", email: "ada@example.test", name: "Ada", roles: ["user"] };

let channelSeq = 0;

/** A problem+json answer as the server sends it (API.md §2). */
export function problem(status, code, extra = {}, headers = {}) {
  return new Response(JSON.stringify({ type: `/errors/${code}`, title: code, status, code, detail: `${code} detail`, request_id: "req-" + code, ...extra }), {
    status,
    headers: { "content-type": "application/problem+json", "x-request-id": "req-" + code, ...headers },
  });
}

function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/**
 * A fake Gatehouse: login, refresh with rotation and grace, logout, profile.
 * `routes` overrides any "METHOD path" with a handler (request) => Response | throws.
 */
export function fakeServer({ expiresIn = 900, refreshDelay = 0 } = {}) {
  const server = {
    jar: new Map(), // the browser's cookie jar (shared by its tabs)
    generation: 1,
    access: null, // current access token
    refresh: null, // current refresh token
    previous: null, // the superseded refresh token (grace)
    revoked: false,
    counts: { success: 0, grace: 0, login: 0 },
    seen: [], // every request: {method, path, headers, body}
    routes: new Map(),
    expiresIn,
    refreshDelay,
    refreshAnswer: null, // (request) => Response: overrides the refresh outcome
    cookieString() {
      return [...this.jar].filter(([name]) => name === "gh_csrf").map(([n, v]) => `${n}=${v}`).join("; ");
    },
    /** The access token expires: the cookie goes (cookie mode), the token answers token_expired. */
    expireAccess() {
      this.jar.delete("gh_access");
      this.access = "expired-" + this.generation;
    },
    issue() {
      this.access = `access-${this.generation}`;
      this.refresh = `refresh-${this.generation}`;
    },
    answerTokens(cookieMode) {
      if (cookieMode) {
        this.jar.set("gh_access", this.access);
        this.jar.set("gh_refresh", this.refresh);
        this.jar.set("gh_csrf", "csrf-token-1");
        return json({ user: USER, session_id: "s1", expires_in: this.expiresIn, refresh_expires_in: 1000 });
      }
      return json({ access_token: this.access, token_type: "Bearer", expires_in: this.expiresIn, refresh_token: this.refresh, refresh_expires_in: 1000, session_id: "s1", user: USER });
    },
    count(method, path) {
      return this.seen.filter((r) => r.method === method && r.path === path).length;
    },
  };

  function authenticated(request) {
    const header = request.headers.get("authorization");
    const token = header ? header.replace(/^Bearer /, "") : server.jar.get("gh_access");
    if (!token) return problem(401, "token_missing");
    if (server.revoked) return problem(401, "session_revoked");
    if (token !== server.access) return problem(401, "token_expired");
    return null;
  }

  async function handle(request) {
    const url = new URL(request.url);
    const key = `${request.method} ${url.pathname}`;
    const text = request.method === "GET" || request.method === "HEAD" ? "" : await request.text();
    server.seen.push({ method: request.method, path: url.pathname, headers: request.headers, body: text, url: request.url });
    if (server.routes.has(key)) return server.routes.get(key)(request, text);
    const cookieMode = request.headers.get("x-auth-mode") === "cookie";
    switch (key) {
      case "POST /api/v1/auth/login":
      case "POST /api/v1/auth/login/mfa": {
        server.counts.login += 1;
        server.revoked = false;
        server.generation += 1;
        server.issue();
        return server.answerTokens(cookieMode);
      }
      case "POST /api/v1/auth/refresh": {
        if (server.refreshDelay) await sleep(server.refreshDelay);
        if (server.refreshAnswer) return server.refreshAnswer(request);
        const fromBody = text ? JSON.parse(text).refresh_token : null;
        const token = fromBody ?? server.jar.get("gh_refresh");
        const viaCookie = fromBody === null;
        if (viaCookie && request.headers.get("x-csrf-token") !== server.jar.get("gh_csrf")) return problem(403, "csrf_failed");
        if (server.revoked) return problem(401, "session_revoked");
        if (token === server.refresh) {
          server.counts.success += 1;
          server.previous = server.refresh;
          server.generation += 1;
          server.issue();
          return server.answerTokens(viaCookie);
        }
        if (token === server.previous) {
          server.counts.grace += 1;
          return server.answerTokens(viaCookie);
        }
        return problem(401, "refresh_invalid");
      }
      case "POST /api/v1/auth/logout":
      case "POST /api/v1/auth/logout-all": {
        const denied = authenticated(request);
        if (denied) return denied;
        server.revoked = true;
        server.jar.clear();
        return new Response(null, { status: 204 });
      }
      case "GET /api/v1/users/profile": {
        const denied = authenticated(request);
        return denied ?? json(USER);
      }
      default:
        return problem(404, "not_found");
    }
  }

  /** The `fetch` the client gets: honours the abort signal like the real one. */
  server.fetch = (input, init = {}) => {
    const request = new Request(input, init);
    return new Promise((resolve, reject) => {
      const signal = request.signal;
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      Promise.resolve().then(() => handle(request)).then(resolve, reject);
    });
  };
  server.issue();
  return server;
}

/** navigator.locks for the tabs of one browser: exclusive, FIFO, abortable while waiting, ifAvailable. */
export class FakeLocks {
  constructor() {
    this.held = new Map(); // name -> clientId
    this.queues = new Map(); // name -> [{grant, clientId}]
    this.grants = 0;
  }
  /** A LockManager as one tab sees it (each tab has its own clientId). */
  forTab(clientId) {
    return {
      request: (name, options, callback) => this.request(clientId, name, options, callback),
      query: async () => ({ held: [...this.held].map(([name, id]) => ({ name, clientId: id, mode: "exclusive" })), pending: [] }),
    };
  }
  /** A holder that takes `name` and never lets go (a frozen tab). */
  holdForever(name, clientId = "frozen-tab") {
    this.held.set(name, clientId);
  }
  request(clientId, name, options, callback) {
    return new Promise((resolve, reject) => {
      const entry = { clientId, grant: null };
      const run = () => {
        this.held.set(name, clientId);
        this.grants += 1;
        Promise.resolve().then(() => callback({ name, mode: "exclusive" })).then(
          (value) => { this.release(name); resolve(value); },
          (error) => { this.release(name); reject(error); },
        );
      };
      entry.grant = run;
      const signal = options?.signal;
      if (signal?.aborted) return reject(signal.reason);
      if (!this.held.has(name) && !(this.queues.get(name)?.length)) return run();
      if (options?.ifAvailable) { // not free: the callback gets null at once
        Promise.resolve().then(() => callback(null)).then(resolve, reject);
        return undefined;
      }
      const queue = this.queues.get(name) ?? [];
      queue.push(entry);
      this.queues.set(name, queue);
      signal?.addEventListener("abort", () => {
        const index = queue.indexOf(entry);
        if (index >= 0) {
          queue.splice(index, 1);
          reject(signal.reason);
        }
      }, { once: true });
    });
  }
  release(name) {
    this.held.delete(name);
    const next = this.queues.get(name)?.shift();
    if (next) next.grant();
  }
}

/** A localStorage: one per browser, shared by its tabs. */
export function memoryStorage() {
  const data = new Map();
  return {
    getItem: (key) => (data.has(key) ? data.get(key) : null),
    setItem: (key, value) => { data.set(key, String(value)); },
    removeItem: (key) => { data.delete(key); },
    clear: () => data.clear(),
    get length() { return data.size; },
    data,
  };
}

/**
 * A browser: one server, one cookie jar, one lock manager, one localStorage,
 * and a BroadcastChannel name space of its own (node's real BroadcastChannel).
 */
export function fakeBrowser({ locks = true, server = fakeServer() } = {}) {
  const space = `test-${process.pid}-${channelSeq++}`;
  const browser = {
    server,
    locks: new FakeLocks(),
    localStorage: memoryStorage(),
    tabs: 0,
    /** The `env` option of one tab: its own registry (a page), the browser's shared APIs. */
    tabEnv() {
      const id = `tab-${++this.tabs}`;
      class TabChannel extends BroadcastChannel {
        constructor(name) { super(`${space}:${name}`); }
      }
      return {
        locks: locks ? this.locks.forTab(id) : null,
        localStorage: this.localStorage,
        sessionStorage: memoryStorage(),
        BroadcastChannel: TabChannel,
        cookie: () => server.cookieString(),
        window: new EventTarget(),
        registry: new Map(),
      };
    },
  };
  return browser;
}

/** Lets pending promise callbacks and message deliveries run. */
export async function settle(ms = 20) {
  await sleep(ms);
}
