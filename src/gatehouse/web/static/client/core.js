/**
 * createClient: one client of a tab. Its options are normalised once
 * (options.js), its calls go through the request pipeline (request.js), and
 * it shares the tab's session (session.js) with every other client of the
 * same base URL and mode: login, MFA, logout, restore, refresh, hooks.
 */
import { GatehouseError, ENDING_CODES, errorFromResponse, readProblem } from "./errors.js";
import { normalizeOptions } from "./options.js";
import { refreshSession } from "./refresh.js";
import { createPipeline } from "./request.js";
import { sharedSessionFor } from "./session.js";

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

  const { send, authSend, fail } = createPipeline({ config, hooks, shared });

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
      shared.syncFromStore();
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
