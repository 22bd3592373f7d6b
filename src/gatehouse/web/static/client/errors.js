/**
 * GatehouseError: the one error the client throws (API.md §2 problem details).
 *
 * A server answer keeps its `status`, `code`, `detail` and `request_id`; a
 * request that got no answer has status 0 and code `network_error` or
 * `timeout`. An answer that is not problem+json (a proxy's 502 page) gets code
 * `http_error`.
 */

/** The codes that end a session (API.md §2): nothing else does. */
export const ENDING_CODES = Object.freeze([
  "refresh_invalid", "refresh_expired", "refresh_reused", "session_revoked",
]);

/** Parses a `Retry-After` header (seconds or an HTTP date) into whole seconds, or null. */
export function parseRetryAfter(/** @type {string | null} */ value, now = Date.now()) {
  if (value === null || value.trim() === "") return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

export class GatehouseError extends Error {
  /**
   * @param {{status?: number, code?: string, title?: string, detail?: string,
   *   requestId?: string | null, retryAfter?: number | null, mfaToken?: string | null,
   *   methods?: string[] | null, problem?: Record<string, unknown> | null,
   *   response?: Response | null, request?: Request | null, cause?: unknown}} [fields]
   */
  constructor(fields = {}) {
    const code = fields.code ?? "http_error";
    const detail = fields.detail ?? fields.title ?? code;
    super(detail, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = "GatehouseError";
    /** HTTP status, 0 when no answer arrived. */
    this.status = fields.status ?? 0;
    /** Stable machine-readable code (API.md §2), or network_error / timeout / http_error. */
    this.code = code;
    this.title = fields.title ?? "";
    /** Human-readable and safe to show. */
    this.detail = detail;
    /** The X-Request-ID of the answer, to quote to support. */
    this.requestId = fields.requestId ?? null;
    /** Seconds to wait (429, 503), else null. */
    this.retryAfter = fields.retryAfter ?? null;
    /** For `mfa_required`: the single-use token `verifyMfa` takes. */
    this.mfaToken = fields.mfaToken ?? null;
    /** For `mfa_required`: the accepted second factors. */
    this.methods = fields.methods ?? null;
    /** The whole problem+json body, when there was one. */
    this.problem = fields.problem ?? null;
    this.response = fields.response ?? null;
    this.request = fields.request ?? null;
  }

  /** Whether this error ends the session (refresh_* and session_revoked). */
  get endsSession() {
    return ENDING_CODES.includes(this.code);
  }
}

/**
 * The problem body of an error response, read from a clone (the caller keeps
 * an unread body); null when it is not JSON.
 * @param {Response} response
 * @returns {Promise<Record<string, any> | null>}
 */
export async function readProblem(response) {
  const type = response.headers.get("content-type") ?? "";
  if (!type.includes("json")) return null;
  try {
    const body = await response.clone().json();
    return body && typeof body === "object" ? body : null;
  } catch {
    return null;
  }
}

/**
 * A GatehouseError describing a non-2xx `response`.
 * @param {Response} response
 * @param {Request | null} [request]
 */
export async function errorFromResponse(response, request = null) {
  const problem = await readProblem(response);
  const header = parseRetryAfter(response.headers.get("retry-after"));
  const code = typeof problem?.code === "string" ? problem.code : "http_error";
  return new GatehouseError({
    status: response.status,
    code,
    title: typeof problem?.title === "string" ? problem.title : response.statusText,
    detail: typeof problem?.detail === "string" ? problem.detail
      : `The server answered ${response.status}.`,
    requestId: (typeof problem?.request_id === "string" ? problem.request_id : null)
      ?? response.headers.get("x-request-id"),
    retryAfter: typeof problem?.retry_after === "number" ? problem.retry_after : header,
    mfaToken: typeof problem?.mfa_token === "string" ? problem.mfa_token : null,
    methods: Array.isArray(problem?.methods) ? problem.methods : null,
    problem,
    response,
    request,
  });
}

/**
 * A GatehouseError for a request that got no answer.
 * @param {unknown} cause
 * @param {Request | null} request
 * @param {boolean} timedOut
 */
export function noAnswerError(cause, request, timedOut) {
  return new GatehouseError({
    status: 0,
    code: timedOut ? "timeout" : "network_error",
    title: timedOut ? "Request timed out" : "Network error",
    detail: timedOut ? "The server did not answer in time." : "The server could not be reached.",
    request,
    cause,
  });
}
