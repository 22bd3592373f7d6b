/** The reason a `timeoutSignal` aborts with: a name callers can test for. */
export class TimeoutError extends Error {
  /** @param {number} ms */
  constructor(ms) {
    super(`Timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/**
 * An AbortSignal that aborts after `ms` (reason: TimeoutError) or when any of
 * `signals` aborts (their reason), and a `clear` that drops the timer once the
 * work is done. Built on setTimeout (not AbortSignal.timeout) so fake timers apply.
 * @param {number} ms
 * @param {...(AbortSignal | null | undefined)} signals
 * @returns {{signal: AbortSignal, clear: () => void}}
 */
export function timeoutSignal(ms, ...signals) {
  const controller = new AbortController();
  const abort = (/** @type {unknown} */ reason) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const timer = Number.isFinite(ms) ? setTimeout(() => abort(new TimeoutError(ms)), ms) : null;
  /** @type {Array<() => void>} */
  const detach = [];
  for (const signal of signals) {
    if (!signal) continue;
    if (signal.aborted) {
      abort(signal.reason);
      break;
    }
    const onAbort = () => abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    detach.push(() => signal.removeEventListener("abort", onAbort));
  }
  return {
    signal: controller.signal,
    clear() {
      if (timer !== null) clearTimeout(timer);
      for (const undo of detach) undo();
    },
  };
}
