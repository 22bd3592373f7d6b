/**
 * installErrorBoundary (API.md §9): an uncaught error or unhandled rejection
 * shows a friendly message (with the request id when there is one) and is
 * reported to POST /api/v1/client-errors, at most `limit` reports a minute per
 * tab: a sliding window, so a burst counts (the 11th within a minute is dropped).
 *
 * The message element has role="alert" and the class `gatehouse-error`, and is
 * shown and hidden with the `hidden` attribute: no inline style, which the CSP
 * of the console forbids; the page styles the class. Reports carry the page's
 * origin and path only: a fragment or query may hold a reset link's token.
 */

const DEFAULT_MESSAGE = "Something went wrong. Please try again, or reload the page.";

/**
 * @param {string | null | undefined} text
 * @param {number} max
 */
function clip(text, max) {
  if (typeof text !== "string" || text === "") return undefined;
  return text.length > max ? text.slice(0, max) : text;
}

/** @param {unknown} error */
function describe(error) {
  if (error instanceof Error) {
    const code = /** @type {any} */ (error).code;
    const message = typeof code === "string" && code !== "" ? `${error.name} ${code}: ${error.message}` : `${error.name}: ${error.message}`;
    return {
      message,
      stack: typeof error.stack === "string" ? error.stack : undefined,
      requestId: typeof (/** @type {any} */ (error).requestId) === "string" ? /** @type {any} */ (error).requestId : undefined,
    };
  }
  return { message: typeof error === "string" ? error : String(error), stack: undefined, requestId: undefined };
}

/**
 * @param {Pick<import("../gatehouse-client.js").GatehouseClient, "fetch">} client
 * @param {import("../gatehouse-client.js").ErrorBoundaryOptions} [options]
 * @returns {() => void} uninstalls the boundary
 */
export function installErrorBoundary(client, options = {}) {
  const g = /** @type {any} */ (globalThis);
  const target = options.target ?? g;
  const doc = options.document ?? g.document ?? null;
  const limit = options.limit ?? 10;
  const interval = options.interval ?? 60_000;
  const friendly = options.message ?? DEFAULT_MESSAGE;
  /** @type {number[]} when the reports of the last `interval` were sent */
  const sent = [];
  /** @type {HTMLElement | null} */
  let element = options.element ?? null;
  let created = false;

  function messageElement() {
    if (element || !doc) return element;
    const made = doc.createElement("div");
    made.className = "gatehouse-error";
    made.setAttribute("role", "alert");
    made.hidden = true;
    doc.body?.append(made);
    element = made;
    created = true;
    return made;
  }

  /** @param {string | undefined} requestId */
  function show(requestId) {
    const el = messageElement();
    if (!el) return;
    el.textContent = requestId ? `${friendly} (Request id: ${requestId})` : friendly;
    el.hidden = false;
  }

  /** @param {ReturnType<typeof describe>} what */
  function report(what) {
    if (options.report === false) return false;
    const now = Date.now();
    while (sent.length > 0 && now - /** @type {number} */ (sent[0]) >= interval) sent.shift();
    if (sent.length >= limit) return false;
    sent.push(now);
    const location = g.location;
    const body = {
      message: clip(what.message, 2000) ?? "Unknown error",
      stack: clip(what.stack, 16_000),
      url: location ? clip(`${location.origin}${location.pathname}`, 2000) : undefined,
      request_id: clip(what.requestId, 64),
    };
    options.onReport?.(body);
    client.fetch("/api/v1/client-errors", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).catch(() => {
      // reporting is best effort; a failure here must not raise a new error
    });
    return true;
  }

  /** @param {unknown} error */
  function handle(error) {
    const what = describe(error);
    show(what.requestId);
    report(what);
  }

  /** @param {Event} event */
  const onError = (event) => handle(/** @type {ErrorEvent} */ (event).error ?? /** @type {ErrorEvent} */ (event).message);
  /** @param {Event} event */
  const onRejection = (event) => handle(/** @type {PromiseRejectionEvent} */ (event).reason);
  target.addEventListener("error", onError);
  target.addEventListener("unhandledrejection", onRejection);
  return () => {
    target.removeEventListener("error", onError);
    target.removeEventListener("unhandledrejection", onRejection);
    if (created) element?.remove();
  };
}
