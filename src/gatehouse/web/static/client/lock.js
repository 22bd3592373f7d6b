/**
 * The cross-tab refresh lock: who of the tabs of an origin sends the refresh.
 *
 * Web Locks where the browser has them; elsewhere a lease in localStorage
 * (owner + expiry, written then read back after a short settle, since
 * localStorage has no compare-and-set). Acquisition is always bounded:
 * `acquire` resolves to `null` when it gives up and the caller refreshes on
 * its own. A tab that is frozen keeps its Web Lock: when waiting for it times
 * out, the live tabs (which all time out at about the same moment) meet on
 * the lease instead, for at most half the timeout more, and while that holder
 * still holds the Web Lock they go straight to the lease. A closed or crashed
 * tab's Web Lock is released by the browser; its lease expires by itself.
 * Correctness never rests on this lock: the server's idempotent grace is the
 * floor; the lock only keeps it to one request.
 *
 * `acquire` also says whether the lock was contended (another tab held it
 * when we asked): then that tab may just have refreshed, and its outcome may
 * not have reached this tab yet (localStorage and BroadcastChannel are
 * asynchronous between renderer processes), so the caller waits for it a
 * moment. Web Locks: an `ifAvailable` request first (no wait when free);
 * lease: another tab's live lease was seen.
 */
import { delay } from "./utils/delay.js";
import { timeoutSignal } from "./utils/timeout.js";

const LEASE_MS = 5000; // a lease outlives a refresh; a dead tab's lease expires by itself
const SETTLE_MS = 40; // time for a competing write to land before we read back
const POLL_MS = 50;

/**
 * @typedef {{request: Function, query?: () => Promise<{held?: Array<{name?: string, clientId?: string}>}>}} LockManagerLike
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void, removeItem(key: string): void}} StorageLike
 * @typedef {() => void} Release
 * @typedef {{release: Release, contended: boolean}} Held
 */

/**
 * @param {{name: string, locks: LockManagerLike | null, storage: StorageLike | null}} options
 */
export function createTabLock({ name, locks, storage }) {
  const owner = Math.random().toString(36).slice(2) + Date.now().toString(36);
  const leaseKey = `${name}:lease`;
  /** @type {string | null} the clientId of a Web Lock holder that outlived our timeout */
  let stuckHolder = null;

  /** @returns {Promise<string | null>} */
  async function holderOfWebLock() {
    if (!locks?.query) return null;
    try {
      const state = await locks.query();
      return state.held?.find((lock) => lock.name === name)?.clientId ?? null;
    } catch {
      return null;
    }
  }

  /**
   * The Web Lock if it is free right now ("free"), "busy" when another tab
   * holds it, "stuck" when the lock manager gave no answer within `timeout`.
   * @param {number} timeout
   * @returns {Promise<Release | "busy" | "stuck">}
   */
  function tryWebLock(timeout) {
    return new Promise((resolve) => {
      let answered = false;
      const timer = setTimeout(() => {
        answered = true;
        resolve("stuck");
      }, timeout);
      const answer = (/** @type {Release | "busy"} */ value) => {
        clearTimeout(timer);
        answered = true;
        resolve(value);
      };
      try {
        Promise.resolve(locks?.request(name, { ifAvailable: true }, (/** @type {unknown} */ lock) => {
          if (answered) return undefined; // granted after we gave up: let go at once
          if (!lock) {
            answer("busy");
            return undefined;
          }
          return new Promise((release) => answer(() => release(undefined)));
        })).catch(() => {
          if (!answered) answer("busy");
        });
      } catch {
        answer("busy"); // a lock manager without ifAvailable: queue like everyone else
      }
    });
  }

  /**
   * @param {number} timeout
   * @param {AbortSignal | undefined} signal
   * @returns {Promise<Held | null>}
   */
  async function acquireContendedWebLock(timeout, signal) {
    const started = Date.now();
    const first = await tryWebLock(timeout);
    if (typeof first === "function") return { release: first, contended: false };
    const left = timeout - (Date.now() - started);
    if (first === "stuck" || left <= 0) {
      stuckHolder = await holderOfWebLock();
      return storage ? acquireLease(timeout / 2, signal) : null;
    }
    const release = await acquireWebLock(left, signal);
    if (typeof release === "function") return { release, contended: true };
    return release; // the lease after a timeout (it says itself), or null
  }

  /**
   * @param {number} timeout
   * @param {AbortSignal | undefined} signal
   * @returns {Promise<Release | Held | null>}
   */
  function acquireWebLock(timeout, signal) {
    const bounded = timeoutSignal(timeout, signal);
    return new Promise((resolve, reject) => {
      let granted = false;
      /** @type {Promise<unknown>} */
      const request = locks?.request(name, { signal: bounded.signal }, () => {
        granted = true;
        bounded.clear();
        return new Promise((release) => resolve(() => release(undefined)));
      });
      Promise.resolve(request).catch(async (/** @type {unknown} */ error) => {
        bounded.clear();
        if (granted) return; // a failure after the grant is not ours to report
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        if (bounded.signal.aborted) {
          stuckHolder = await holderOfWebLock();
          resolve(storage ? acquireLease(timeout / 2, signal) : null);
          return;
        }
        reject(error);
      });
    });
  }

  /** @returns {{owner: string, until: number} | null} */
  function readLease() {
    try {
      const raw = storage?.getItem(leaseKey);
      return raw ? JSON.parse(raw) : null;
    } catch {
      return null;
    }
  }

  /**
   * @param {number} timeout
   * @param {AbortSignal | undefined} signal
   * @returns {Promise<Held | null>}
   */
  async function acquireLease(timeout, signal) {
    const deadline = Date.now() + timeout;
    let contended = false;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const current = readLease();
      if (!current || current.until <= Date.now() || current.owner === owner) {
        try {
          storage?.setItem(leaseKey, JSON.stringify({ owner, until: Date.now() + LEASE_MS }));
        } catch {
          return null; // storage full or denied: go alone, the server's grace is the floor
        }
        await delay(SETTLE_MS, signal);
        if (readLease()?.owner === owner) {
          return {
            release: () => {
              if (readLease()?.owner === owner) storage?.removeItem(leaseKey);
            },
            contended,
          };
        }
        contended = true; // another tab wrote its lease over ours
      } else {
        contended = true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await delay(Math.min(POLL_MS, left), signal);
    }
  }

  return {
    /**
     * The lock (and whether another tab held it first), or null after
     * `timeout` ms (go alone). Rejects with the signal's reason when `signal`
     * aborts first (the outcome arrived).
     * @param {{timeout: number, signal?: AbortSignal}} options
     * @returns {Promise<Held | null>}
     */
    async acquire({ timeout, signal }) {
      if (locks) {
        if (stuckHolder !== null) {
          const holder = await holderOfWebLock();
          if (holder === stuckHolder) {
            return storage ? acquireLease(timeout, signal) : null;
          }
          stuckHolder = null;
        }
        return acquireContendedWebLock(timeout, signal);
      }
      if (storage) return acquireLease(timeout, signal);
      return null;
    },
  };
}
