/**
 * One refresh per access-token expiry across every tab of an origin.
 *
 * In a tab: one promise in flight, shared by every request and every client of
 * the tab (they share one session object). Across tabs: the refresh lock
 * (lock.js), with the outcome shared over the tab channel and in localStorage,
 * so a tab that waited adopts it instead of refreshing again. Waiting for the
 * lock is bounded (`lockTimeout`), and ends early when the outcome arrives.
 * After the outcome is published the lock is held a moment longer, so the tabs
 * queued behind it hear the outcome before they get the lock; on release the
 * holder posts a `released` message on the tab channel (after its outcome, so
 * a tab that hears it has heard the outcome). Under load that moment is not
 * always enough (localStorage and the channel reach other renderer processes
 * asynchronously), so a tab that got the lock after another tab held it, and
 * still sees the access token it observed, waits for that `released` message
 * or a newer session (at most OUTCOME_WAIT_MS) before it refreshes itself. An
 * uncontended lock costs no wait; a holder that died sends nothing, and the
 * wait only delays the next refresh a little.
 *
 * The refresh request itself retries network errors, 502-504 and 429 (the
 * server answers a repeated refresh token idempotently within its grace), and
 * only refresh_invalid / refresh_expired / refresh_reused / session_revoked
 * end the session.
 */
import { ENDING_CODES, errorFromResponse } from "./errors.js";

export const HOLD_AFTER_OUTCOME_MS = 150;
/** The longest a tab that got a contended lock waits for the previous holder's outcome (ms). */
export const OUTCOME_WAIT_MS = 1200;

/**
 * @typedef {import("./session.js").SharedSession} SharedSession
 * @typedef {(path: string, init: RequestInit) => Promise<Response>} AuthSend
 */

/**
 * Refreshes unless the session moved past `observed` (an access token this
 * tab saw); true when a usable session follows, false when it ended. Throws a
 * GatehouseError when the server could not be reached (the session is kept).
 * @param {SharedSession} shared
 * @param {number} observed the `issuedAt` of the access token that failed or expires
 * @param {AuthSend} send
 * @returns {Promise<boolean>}
 */
export function refreshSession(shared, observed, send) {
  shared.syncFromStore();
  if (shared.issuedAt !== observed) return Promise.resolve(shared.hasSession);
  if (!shared.hasSession) return Promise.resolve(false);
  if (!shared.inflight) {
    shared.inflight = runRefresh(shared, observed, send).finally(() => {
      shared.inflight = null;
    });
  }
  return shared.inflight;
}

/**
 * @param {SharedSession} shared
 * @param {number} observed
 * @param {AuthSend} send
 */
async function runRefresh(shared, observed, send) {
  const outcome = new AbortController();
  shared.waiters.add(outcome);
  /** @type {(() => void) | null} */
  let release = null;
  const releasesBefore = shared.releases;
  try {
    try {
      const held = await shared.lock.acquire({ timeout: shared.config.lockTimeout, signal: outcome.signal });
      release = held?.release ?? null;
      // Holding the lock (or alone after the bound): did another tab refresh meanwhile?
      shared.syncFromStore();
      if (held?.contended && shared.issuedAt === observed && shared.hasSession
          && shared.releases === releasesBefore) {
        await shared.heardRelease(OUTCOME_WAIT_MS, outcome.signal);
        shared.syncFromStore();
      }
    } catch (error) {
      if (outcome.signal.aborted) return shared.hasSession; // another tab's outcome arrived
      throw error;
    }
    if (shared.issuedAt !== observed) return shared.hasSession;
    if (!shared.hasSession) return false;
    shared.waiters.delete(outcome);

    const tokens = shared.tokens?.read() ?? null;
    const body = shared.config.mode === "token"
      ? JSON.stringify({ refresh_token: tokens?.refresh_token ?? "" })
      : undefined;
    // Expiry counts from when the request left, not when the answer arrived: never late.
    const sentAt = Date.now();
    const response = await send("/api/v1/auth/refresh", {
      method: "POST",
      headers: body ? { "Content-Type": "application/json" } : {},
      body,
    });
    if (response.ok) {
      shared.applyTokens(await response.json(), sentAt);
      return true;
    }
    const error = await errorFromResponse(response);
    if (ENDING_CODES.includes(error.code)) {
      shared.end(error.code, { notify: true, broadcast: true });
      return false;
    }
    throw error; // 403, 429, 5xx: the session stays; the caller's request fails this once
  } finally {
    shared.waiters.delete(outcome);
    if (release) {
      const unlock = release;
      setTimeout(() => {
        shared.channel.post({ type: "released", scope: shared.scope });
        unlock();
      }, HOLD_AFTER_OUTCOME_MS);
    }
  }
}
