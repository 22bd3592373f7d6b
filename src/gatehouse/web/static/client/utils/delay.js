/**
 * A promise that resolves after `ms` milliseconds, or rejects with the signal's
 * reason as soon as `signal` aborts. Reads `setTimeout` at call time, so fake
 * timers installed by a test apply.
 * @param {number} ms
 * @param {AbortSignal | undefined} [signal]
 * @returns {Promise<void>}
 */
export function delay(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
