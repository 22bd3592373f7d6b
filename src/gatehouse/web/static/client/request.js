/**
 * The request pipeline every call of a client goes through.
 *
 * A request goes: wait for a refresh in flight → add credentials (Bearer in
 * token mode; X-CSRF-Token on unsafe methods in cookie mode; only to the
 * service's origin) → request hooks in order → fetch (per-attempt timeout) →
 * on 401 token_expired / token_invalid (and token_missing in cookie mode while
 * holding a session): one refresh, one retry → on network errors, 502, 503,
 * 504, 429 and an idempotent method: backoff or Retry-After, retry → response
 * hooks in order. Errors go through the error hooks, then `onError`.
 */
import { ENDING_CODES, errorFromResponse, noAnswerError, readProblem } from "./errors.js";
import { retriesMethod, retryDelay } from "./retry.js";
import { applyCsrf, CSRF_COOKIE, readCookie } from "./csrf.js";
import { refreshSession } from "./refresh.js";
import { resolveUrl } from "./options.js";
import { delay } from "./utils/delay.js";
import { isNetworkError } from "./utils/is-network-error.js";
import { TimeoutError, timeoutSignal } from "./utils/timeout.js";

const REFRESH_CODES = ["token_expired", "token_invalid"];

/**
 * @typedef {import("./errors.js").GatehouseError} GatehouseError
 * @typedef {{request: Function[], response: Function[], error: Function[]}} HookLists
 */

/**
 * @param {{config: ReturnType<typeof import("./options.js").normalizeOptions>, hooks: HookLists,
 *   shared: import("./session.js").SharedSession}} parts
 */
export function createPipeline({ config, hooks, shared }) {
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

  return { send, authSend, fail };
}
