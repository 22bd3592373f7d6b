/**
 * Types of the Gatehouse browser client (`/static/gatehouse-client.js`, API.md §9).
 * Checked against the module by `npm test` (tsc, tests/js/tsconfig.json).
 */

/** A Gatehouse user as the API answers it (API.md §4). */
export interface User {
  id: string;
  email: string;
  name: string;
  roles: string[];
  disabled?: boolean;
  created_at?: string;
  email_verified?: boolean;
  mfa_enabled?: boolean;
  [field: string]: unknown;
}

/** The state every hook gets besides its subject. */
export interface HookState {
  /** The request as sent (after the request hooks that ran before). */
  request: Request | null;
  /** 0 on the first try; counts retries (backoff, Retry-After, the retry after a refresh). */
  retryCount: number;
}

/**
 * Runs before each try of each request, in the order `use` added them, after the
 * client added its credentials (Bearer or X-CSRF-Token).
 *
 * Return a `Request` to send that one instead (later hooks get it); return a
 * `Response` to skip the network and answer with it (later request hooks do not
 * run); return nothing to send the request as it is.
 *
 * @example
 * client.use({
 *   request(request) {
 *     const headers = new Headers(request.headers);
 *     headers.set("X-App-Version", "1.4.2");
 *     return new Request(request, { headers });
 *   },
 * });
 */
export type RequestHook = (request: Request, state: HookState) => Request | Response | void | Promise<Request | Response | void>;

/**
 * Runs on each final response (after refresh and retries), in the order `use`
 * added them. Return a `Response` to hand that one to the caller (and to the
 * later hooks) instead; return nothing to keep it.
 *
 * @example
 * client.use({
 *   response(response) {
 *     if (response.headers.get("Deprecation")) console.warn("deprecated route", response.url);
 *   },
 * });
 */
export type ResponseHook = (response: Response, state: HookState) => Response | void | Promise<Response | void>;

/**
 * Runs on each `GatehouseError` before it is thrown (and before `onError`), in
 * the order `use` added them. Return an `Error` to throw that one instead (later
 * hooks get it); return nothing to throw the error as it is.
 *
 * @example
 * client.use({
 *   error(error) {
 *     if (error.code === "rate_limited") error.message = `Busy: try again in ${error.retryAfter} s`;
 *   },
 * });
 */
export type ErrorHook = (error: GatehouseError, state: HookState) => Error | void | Promise<Error | void>;

export interface Hooks {
  request?: RequestHook;
  response?: ResponseHook;
  error?: ErrorHook;
}

/** What `retry` accepts: a number is the limit; `false` or 0 turns retries off. */
export interface RetryOptions {
  /** Retries after the first try (default 10; `maxTotal` usually ends them first). */
  limit?: number;
  /** Methods retried (default GET, HEAD, OPTIONS, PUT, DELETE). */
  methods?: string[];
  /** Statuses retried (default 429, 502, 503, 504); network errors always are. */
  statusCodes?: number[];
  /** First backoff in ms (default 300), doubled each retry, with jitter. */
  backoff?: number;
  /** Longest backoff in ms (default 5000); a server's Retry-After is waited in full. */
  backoffLimit?: number;
  /** No retry starts after this many ms since the first try (default 30000). */
  maxTotal?: number;
}

/** Something that stores strings like `localStorage`. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The browser APIs the client uses; each defaults to the page's own. For tests and unusual hosts. */
export interface ClientEnvironment {
  locks?: Pick<LockManager, "request"> & Partial<Pick<LockManager, "query">> | null;
  localStorage?: StorageLike | null;
  sessionStorage?: StorageLike | null;
  BroadcastChannel?: typeof BroadcastChannel | null;
  /** Reads `document.cookie`. */
  cookie?: () => string;
  /** Where `storage` events arrive (the window). */
  window?: EventTarget | null;
  /** The clients of one page share a session through this map. */
  registry?: Map<string, unknown>;
}

export interface ClientOptions {
  /** The service's URL (default: the page's origin). Relative inputs are appended to it. */
  baseUrl?: string;
  /** `"cookie"` (default): HttpOnly cookies, the page must be on the service's origin. `"token"`: Bearer tokens. */
  mode?: "cookie" | "token";
  /**
   * Token mode: where tokens live. `"memory"` (default: this tab only), `"sessionStorage"`,
   * `"localStorage"` (every tab of the origin shares one session), or a Storage-like object.
   */
  storage?: "memory" | "sessionStorage" | "localStorage" | StorageLike;
  /** Called once per tab when the session ends: `refresh_invalid`, `refresh_expired`, `refresh_reused` or `session_revoked` (a logout in another tab). */
  onSessionExpired?: (code: string) => void;
  /**
   * Called with every error the client throws (after the error hooks). A proactive refresh
   * that fails is not reported: it is tried again, and the request that needs it reports.
   */
  onError?: (error: GatehouseError | unknown) => void;
  /** Retries of idempotent requests (default `{limit: 10, maxTotal: 30000}`). */
  retry?: number | false | RetryOptions;
  /** ms one try may take before it fails with code `timeout` (default 30000). */
  timeout?: number;
  /** ms a tab waits for the cross-tab refresh lock before refreshing on its own (default 3000). */
  lockTimeout?: number;
  /** The `fetch` to use (default the page's). */
  fetch?: typeof fetch;
  env?: ClientEnvironment;
}

export interface SignedIn {
  user: User;
}

export interface GatehouseClient {
  /** The signed-in user, or null (after a page load: until `restore()` answers). */
  readonly user: User | null;
  /** Password sign-in. Throws `GatehouseError` (`mfa_required` carries `mfaToken`). */
  login(email: string, password: string): Promise<SignedIn>;
  /** Second step of a sign-in with MFA on (API.md §8). */
  verifyMfa(mfaToken: string, code: string): Promise<SignedIn>;
  /** Ends this session in every tab; the other tabs fire `onSessionExpired("session_revoked")`. */
  logout(): Promise<void>;
  /** Ends every session of the user; every tab of the origin hears of it. */
  logoutAll(): Promise<void>;
  /** After a page load: the session the cookies (or stored tokens) hold, or null. */
  restore(): Promise<SignedIn | null>;
  /** Refreshes now, shared with every tab; true when a session follows. */
  refresh(): Promise<boolean>;
  /**
   * `fetch` with credentials, CSRF, refresh and retries. Resolves with the final
   * response whatever its status; rejects with `GatehouseError` (`network_error`,
   * `timeout`) only when no response arrived.
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Like `fetch`, then the parsed JSON body (null for 204); a non-2xx answer throws `GatehouseError`. */
  json<T = any>(input: RequestInfo | URL, init?: RequestInit): Promise<T>;
  /** Adds hooks; returns a function that removes exactly these. */
  use(hooks: Hooks): () => void;
  /** Stops this client's timers and callbacks (a framework unmounting); resolves once a refresh in flight settled. */
  close(): Promise<void>;
}

export declare function createClient(options?: ClientOptions): GatehouseClient;

export interface GatehouseErrorFields {
  status?: number;
  code?: string;
  title?: string;
  detail?: string;
  requestId?: string | null;
  retryAfter?: number | null;
  mfaToken?: string | null;
  methods?: string[] | null;
  problem?: Record<string, unknown> | null;
  response?: Response | null;
  request?: Request | null;
  cause?: unknown;
}

/** Every failure: a problem+json answer (API.md §2), or no answer (status 0). */
export declare class GatehouseError extends Error {
  constructor(fields?: GatehouseErrorFields);
  /** HTTP status; 0 when no response arrived. */
  status: number;
  /** API.md §2 code, or `network_error`, `timeout`, `http_error` (a body that is not problem+json). */
  code: string;
  title: string;
  /** Human readable, safe to show. */
  detail: string;
  /** X-Request-ID of the answer. */
  requestId: string | null;
  /** Seconds to wait (429, 503). */
  retryAfter: number | null;
  /** `mfa_required`: the token `verifyMfa` takes. */
  mfaToken: string | null;
  /** `mfa_required`: `["totp", "recovery_code"]`. */
  methods: string[] | null;
  problem: Record<string, unknown> | null;
  response: Response | null;
  request: Request | null;
  /** Whether this code ends the session. */
  readonly endsSession: boolean;
}

export interface ErrorBoundaryOptions {
  /** Where `error` and `unhandledrejection` are heard (default the window). */
  target?: EventTarget;
  document?: Document;
  /** The message element (default: a `<div class="gatehouse-error" role="alert" hidden>` added to the body). */
  element?: HTMLElement | null;
  /** The friendly text shown (the request id is added when there is one). */
  message?: string;
  /** Reports per `interval` (default 10). */
  limit?: number;
  /** ms of the sliding window (default 60000). */
  interval?: number;
  /** `false`: show, never report. */
  report?: boolean;
  /** Sees each report body before it is sent. */
  onReport?: (report: { message: string; stack?: string; url?: string; request_id?: string }) => void;
}

/** Shows uncaught errors and reports them to `POST /api/v1/client-errors`; returns the uninstaller. */
export declare function installErrorBoundary(
  client: Pick<GatehouseClient, "fetch">,
  options?: ErrorBoundaryOptions,
): () => void;
