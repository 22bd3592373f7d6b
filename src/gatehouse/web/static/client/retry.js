/**
 * Retry policy (API.md §9): idempotent requests retry on network errors, 502,
 * 503, 504 and 429, with exponential backoff and jitter, waiting exactly
 * `Retry-After` when the server gives one, within a total time cap.
 */

export const RETRY_METHODS = Object.freeze(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
export const RETRY_STATUSES = Object.freeze([429, 502, 503, 504]);

/**
 * @typedef {{limit: number, methods: Set<string>, statuses: Set<number>,
 *   backoff: number, backoffLimit: number, maxTotal: number}} RetryPolicy
 */

/**
 * The policy from the `retry` option: a number (the limit), `false`/0 (never),
 * or an object with any of limit, methods, statusCodes, backoff, backoffLimit, maxTotal.
 * @param {number | boolean | Record<string, any> | undefined} option
 * @returns {RetryPolicy}
 */
export function normalizeRetry(option) {
  /** @type {Record<string, any>} */
  const given = typeof option === "number" ? { limit: option }
    : option === false ? { limit: 0 }
    : (option && typeof option === "object") ? option : {};
  return {
    limit: given.limit ?? 10,
    methods: new Set((given.methods ?? RETRY_METHODS).map((/** @type {string} */ m) => m.toUpperCase())),
    statuses: new Set(given.statusCodes ?? RETRY_STATUSES),
    backoff: given.backoff ?? 300,
    backoffLimit: given.backoffLimit ?? 5000,
    maxTotal: given.maxTotal ?? 30000,
  };
}

/**
 * How long to wait before retry number `attempt + 1`, or null to give up.
 * @param {RetryPolicy} policy
 * @param {{attempt: number, elapsed: number, retryAfter?: number | null}} state
 *   attempt: retries done so far; elapsed: ms since the first try;
 *   retryAfter: the server's Retry-After in seconds, if any.
 * @returns {number | null}
 */
export function retryDelay(policy, { attempt, elapsed, retryAfter = null }) {
  if (attempt >= policy.limit) return null;
  const wait = retryAfter !== null && retryAfter !== undefined
    ? retryAfter * 1000
    // Full backoff, with up to half of it as jitter so tabs and clients do not retry in step.
    : Math.min(policy.backoffLimit, policy.backoff * 2 ** attempt) * (0.5 + Math.random() / 2);
  if (elapsed + wait > policy.maxTotal) return null;
  return wait;
}

/**
 * Whether `method` may be retried under `policy`.
 * @param {RetryPolicy} policy
 * @param {string} method
 */
export function retriesMethod(policy, method) {
  return policy.methods.has(method.toUpperCase());
}
