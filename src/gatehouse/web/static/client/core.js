/**
 * createClient: options normalised once, the request pipeline (hooks, auth,
 * CSRF, refresh-and-retry-once, retries), and the session methods.
 *
 * A request goes: wait for a refresh in flight → add credentials (Bearer in
 * token mode; X-CSRF-Token on unsafe methods in cookie mode) → request hooks
 * in order → fetch (per-attempt timeout) → on 401 token_expired /
 * token_invalid (and token_missing in cookie mode while holding a session):
 * one refresh, one retry → on network errors, 502, 503, 504, 429 and an
 * idempotent method: backoff or Retry-After, retry → response hooks in order.
 */
import { GatehouseError, ENDING_CODES, errorFromResponse, noAnswerError, readProblem } from "./errors.js";
import { normalizeRetry, retriesMethod, retryDelay } from "./retry.js";
import { applyCsrf, CSRF_COOKIE, readCookie } from "./csrf.js";
import { refreshSession } from "./refresh.js";
import { sharedSessionFor } from "./session.js";
import { delay } from "./utils/delay.js";
import { isNetworkError } from "./utils/is-network-error.js";
import { TimeoutError, timeoutSignal } from "./utils/timeout.js";

const REGISTRY = Symbol.for("gatehouse-client.sessions");
const REFRESH_CODES = ["token_expired", "token_invalid"];

/** @param {any} value */
function orNull(value) {
  return value === undefined ? null : value;
}

/**
 * The browser APIs the client uses, from globalThis unless `env` names others
 * (tests, and hosts that are not a browser tab).
 * @param {Record<string, any>} env
 */
function normalizeEnv(env) {
  const g = /** @type {any} */ (globalThis);
  /** @param {() => any} read */
  const safe = (read) => {
    try {
      return orNull(read());
    } catch {
      return null; // e.g. localStorage in a sandboxed frame throws
    }
  };
  if (!g[REGISTRY]) g[REGISTRY] = new Map();
  return {
    locks: "locks" in env ? orNull(env.locks) : safe(() => g.navigator?.locks),
    localStorage: "localStorage" in env ? orNull(env.localStorage) : safe(() => g.localStorage),
    sessionStorage: "sessionStorage" in env ? orNull(env.sessionStorage) : safe(() => g.sessionStorage),
    BroadcastChannel: "BroadcastChannel" in env ? orNull(env.BroadcastChannel) : safe(() => g.BroadcastChannel),
    cookie: typeof env.cookie === "function" ? env.cookie : () => safe(() => g.document?.cookie) ?? "",
    window: "window" in env ? orNull(env.window) : safe(() => (typeof g.addEventListener === "function" ? g : null)),
    registry: env.registry ?? g[REGISTRY],
  };
}

/** @param {Record<string, any>} options */
export function normalizeOptions(options) {
  const env = normalizeEnv(options.env ?? {});
  const origin = /** @type {any} */ (globalThis).location?.origin;
  const base = options.baseUrl ?? origin;
  if (!base) throw new TypeError("createClient: baseUrl is required outside a browser page");
  const baseUrl = String(new URL(String(base))).replace(/\/+$/, "");
  const mode = options.mode ?? "cookie";
  if (mode !== "cookie" && mode !== "token") throw new TypeError('createClient: mode is "cookie" or "token"');
  let storage = null;
  let storageName = "memory";
  if (mode === "token" && options.storage && options.storage !== "memory") {
    storageName = typeof options.storage === "string" ? options.storage : "custom";
    storage = options.storage === "localStorage" ? env.localStorage
      : options.storage === "sessionStorage" ? env.sessionStorage
      : options.storage;
    if (!storage) throw new TypeError(`createClient: ${storageName} is not available here`);
  }
  const fetchImpl = options.fetch ?? /** @type {any} */ (globalThis).fetch?.bind(globalThis);
  if (typeof fetchImpl !== "function") throw new TypeError("createClient: no fetch available");
  return {
    baseUrl,
    origin: new URL(baseUrl).origin,
    mode,
    storage,
    storageName,
    env,
    fetch: fetchImpl,
    retry: normalizeRetry(options.retry),
    timeout: options.timeout ?? 30_000,
    lockTimeout: options.lockTimeout ?? 3_000,
    onSessionExpired: options.onSessionExpired ?? null,
    onError: options.onError ?? null,
  };
}

/**
 * `input` against the base URL: absolute URLs as they are; a path is appended
 * to the base URL's own path (so a base of https://x.test/auth serves "/api/v1/...").
 * @param {string} baseUrl
 * @param {string | URL} input
 */
export function resolveUrl(baseUrl, input) {
  const text = String(input);
  if (/^[a-z][a-z\d+.-]*:/i.test(text)) return text;
  if (text.startsWith("//")) return new URL(text, baseUrl).href;
  return `${baseUrl}/${text.replace(/^\/+/, "")}`;
}

/**
 * Creates a client; see gatehouse-client.d.ts for the options and methods.
 * @param {import("../gatehouse-client.js").ClientOptions} [options]
 * @returns {import("../gatehouse-client.js").GatehouseClient}
 */
export function createClient(options = {}) {
  const config = normalizeOptions(options);
  /** @type {{request: Function[], response: Function[], error: Function[]}} */
  const hooks = { request: [], response: [], error: [] };
  const shared = sharedSessionFor(config);
  let closed = false;

  /**
   * Runs the error hooks, then onError; the error to throw.
   * @param {GatehouseError} error
   * @param {{request: Request | null, retryCount: number}} state
   */
  async function fail(error, state) {
    let current = error;
    for (const hook of [...hooks.error]) {
      const returned = await hook(current, state);
      if (returned instanceof Error) current = /** @type {GatehouseError} */ (returned);
    }
    try {
      config.onError?.(current);
    } catch {
      // a faulty onError must not hide the error itself
    }
    return current;
  }

  /**
   * The whole pipeline. `authenticated: false` for login, MFA and refresh:
   * no Bearer header and no refresh on 401.
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   * @param {{authenticated?: boolean, retryUnsafe?: boolean}} [how]
   * @returns {Promise<Response>}
   */
  async function send(input, init = {}, { authenticated = true, retryUnsafe = false } = {}) {
    const url = input instanceof Request ? input.url : resolveUrl(config.baseUrl, /** @type {string} */ (input));
    // Credentials (Bearer, CSRF token, cookies) go to the service only, never to another origin
    // an absolute URL names; nor does another origin's 401 touch the session.
    const toService = new URL(url).origin === config.origin;
    if (!authenticated && !toService) throw new TypeError("gatehouse-client: auth routes live on baseUrl");
    const original = input instanceof Request
      ? new Request(input, init)
      : new Request(url, { credentials: toService ? "include" : "same-origin", ...init });
    const method = original.method.toUpperCase();
    const withSession = authenticated && toService;
    const idempotent = retryUnsafe || retriesMethod(config.retry, method);
    const started = Date.now();
    let retryCount = 0;
    let attempts = 0;
    let refreshed = false;
    for (;;) {
      const observed = withSession ? await shared.ready(authSend) : shared.issuedAt;
      let request = original.clone();
      const headers = new Headers(request.headers);
      if (config.mode === "token" && withSession && shared.hasSession && !headers.has("authorization")) {
        const access = shared.tokens?.read()?.access_token;
        if (access) headers.set("Authorization", `Bearer ${access}`);
      }
      if (config.mode === "cookie" && toService) applyCsrf(headers, method, readCookie(config.env.cookie(), CSRF_COOKIE));
      request = new Request(request, { headers });
      const state = { request, retryCount };
      /** @type {Response | null} */
      let response = null;
      for (const hook of [...hooks.request]) {
        const returned = await hook(request, state);
        if (returned instanceof Request) {
          request = returned;
          state.request = returned;
        } else if (returned instanceof Response) {
          response = returned;
          break;
        }
      }
      if (response === null) {
        const bounded = timeoutSignal(config.timeout, init.signal ?? original.signal);
        try {
          response = await config.fetch(request, { signal: bounded.signal });
        } catch (cause) {
          const timedOut = bounded.signal.reason instanceof TimeoutError;
          const callerAborted = bounded.signal.aborted && !timedOut;
          if (callerAborted) throw cause; // the caller's own abort is not our error
          if (!timedOut && !isNetworkError(cause)) throw cause; // a bug, not the network
          const error = noAnswerError(cause, request, timedOut);
          const wait = idempotent ? retryDelay(config.retry, { attempt: attempts, elapsed: Date.now() - started }) : null;
          if (wait === null) throw await fail(error, state);
          await delay(wait, init.signal ?? undefined);
          attempts += 1;
          retryCount += 1;
          continue;
        } finally {
          bounded.clear();
        }
      }
      const answer = /** @type {Response} */ (response);
      if (answer.status === 401 && withSession) {
        const code = (await readProblem(answer))?.code;
        const expiredCookie = code === "token_missing" && config.mode === "cookie";
        if (!refreshed && shared.hasSession && (REFRESH_CODES.includes(code) || expiredCookie)) {
          refreshed = true;
          if (await refreshSession(shared, observed, authSend)) {
            retryCount += 1;
            continue; // one retry with the new access token
          }
        } else if (ENDING_CODES.includes(code)) {
          shared.end(code, { notify: true, broadcast: true });
        }
      }
      if (idempotent && config.retry.statuses.has(answer.status)) {
        const retryAfter = (await errorFromResponse(answer.clone())).retryAfter;
        const wait = retryDelay(config.retry, { attempt: attempts, elapsed: Date.now() - started, retryAfter });
        if (wait !== null) {
          await answer.body?.cancel().catch(() => {});
          await delay(wait, init.signal ?? undefined);
          attempts += 1;
          retryCount += 1;
          continue;
        }
      }
      let result = answer;
      for (const hook of [...hooks.response]) {
        const returned = await hook(result, state);
        if (returned instanceof Response) result = returned;
      }
      return result;
    }
  }

  /** The auth routes' sender: no Bearer, no refresh; retried like an idempotent request
   *  (the server answers a repeated refresh token idempotently within its grace).
   * @type {import("./refresh.js").AuthSend} */
  function authSend(path, init) {
    return send(path, init, { authenticated: false, retryUnsafe: path.endsWith("/auth/refresh") });
  }

  /**
   * @param {Response} response
   * @returns {Promise<never>}
   */
  async function throwFor(response) {
    throw await fail(await errorFromResponse(response), { request: null, retryCount: 0 });
  }

  /**
   * POST a JSON body to an auth route that opens a session (login, MFA).
   * @param {string} path
   * @param {Record<string, unknown>} body
   */
  async function openSession(path, body) {
    const headers = { "Content-Type": "application/json", ...(config.mode === "cookie" ? { "X-Auth-Mode": "cookie" } : {}) };
    const sentAt = Date.now();
    const response = await send(path, { method: "POST", headers, body: JSON.stringify(body) }, { authenticated: false });
    if (!response.ok) return throwFor(response);
    /** @type {{user: import("../gatehouse-client.js").User}} */
    const answer = await response.json();
    shared.applyTokens(answer, sentAt);
    return { user: answer.user };
  }

  /**
   * logout / logoutAll: the server ends the session(s), then every tab hears of it.
   * @param {string} path
   * @param {boolean} all
   */
  async function endSession(path, all) {
    shared.quiet += 1; // the calling tab shows no notice
    try {
      const response = await send(path, { method: "POST" });
      const code = response.ok ? null : (await readProblem(response))?.code;
      // 401 with an ending code or token_missing: the session was over already.
      if (!response.ok && !(response.status === 401)) return throwFor(response);
      // The other tabs hear of it (logoutAll: tab-local sessions of the same user too).
      shared.end(code && ENDING_CODES.includes(code) ? code : "session_revoked", { notify: false, broadcast: true, all });
    } finally {
      shared.quiet -= 1;
    }
  }

  /** @type {import("./session.js").Member} */
  const member = {
    onSessionExpired: config.onSessionExpired,
    onError: config.onError,
    send: authSend,
  };
  shared.attach(member);

  const client = {
    /** The signed-in user, or null. */
    get user() {
      return shared.user;
    },
    /** @param {string} email @param {string} password */
    login(email, password) {
      return openSession("/api/v1/auth/login", { email, password });
    },
    /** @param {string} mfaToken @param {string} code */
    verifyMfa(mfaToken, code) {
      return openSession("/api/v1/auth/login/mfa", { mfa_token: mfaToken, code });
    },
    logout() {
      return endSession("/api/v1/auth/logout", false);
    },
    logoutAll() {
      return endSession("/api/v1/auth/logout-all", true);
    },
    /** After a page load: the signed-in user, or null when there is no session. */
    async restore() {
      if (!shared.hasSession) return null;
      shared.quiet += 1; // a session that ended while the page was closed is not news
      try {
        const response = await send("/api/v1/users/profile");
        if (response.ok) {
          /** @type {import("../gatehouse-client.js").User} */
          const user = await response.json();
          shared.user = user;
          return { user };
        }
        if (response.status === 401) {
          shared.end("session_revoked", { notify: false, broadcast: false });
          return null;
        }
        return throwFor(response);
      } finally {
        shared.quiet -= 1;
      }
    },
    /** Refreshes the access token now (shared with every tab), unless one is in flight. */
    async refresh() {
      if (!shared.hasSession) throw await fail(new GatehouseError({ status: 401, code: "token_missing", detail: "Not signed in." }), { request: null, retryCount: 0 });
      return refreshSession(shared, shared.issuedAt, authSend);
    },
    /**
     * @param {RequestInfo | URL} input
     * @param {RequestInit} [init]
     */
    fetch(input, init) {
      return send(input, init);
    },
    /**
     * @param {RequestInfo | URL} input
     * @param {RequestInit} [init]
     */
    async json(input, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has("accept")) headers.set("Accept", "application/json");
      if (init.body !== undefined && init.body !== null && typeof init.body === "string" && !headers.has("content-type")) {
        headers.set("Content-Type", "application/json");
      }
      const response = await send(input, { ...init, headers });
      if (!response.ok) return throwFor(response);
      if (response.status === 204) return null;
      const text = await response.text();
      return text === "" ? null : JSON.parse(text);
    },
    /** @param {{request?: Function, response?: Function, error?: Function}} added */
    use(added) {
      /** @type {Array<[Function[], Function]>} */
      const entries = [];
      for (const kind of /** @type {const} */ (["request", "response", "error"])) {
        const hook = added[kind];
        if (typeof hook === "function") {
          hooks[kind].push(hook);
          entries.push([hooks[kind], hook]);
        }
      }
      return () => {
        for (const [list, hook] of entries) {
          const index = list.indexOf(hook);
          if (index >= 0) list.splice(index, 1);
        }
      };
    },
    /** Stops this client's part in the tab (timers and callbacks; the session stays), once a refresh in flight settled. */
    async close() {
      if (!closed) {
        closed = true;
        shared.detach(member);
      }
      await shared.inflight?.catch(() => false);
    },
  };
  return client;
}
