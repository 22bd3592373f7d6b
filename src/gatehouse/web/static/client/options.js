/**
 * The options of `createClient`, normalised once (never re-read on the hot
 * path), the browser APIs the client uses, and how inputs resolve against
 * `baseUrl`.
 */
import { normalizeRetry } from "./retry.js";

const REGISTRY = Symbol.for("gatehouse-client.sessions");

/** @param {any} value */
function orNull(value) {
  return value === undefined ? null : value;
}

/**
 * The browser APIs the client uses, from globalThis unless `env` names others
 * (tests, and hosts that are not a browser tab).
 * @param {Record<string, any>} env
 */
function normalizeEnv(env) {
  const g = /** @type {any} */ (globalThis);
  /** @param {() => any} read */
  const safe = (read) => {
    try {
      return orNull(read());
    } catch {
      return null; // e.g. localStorage in a sandboxed frame throws
    }
  };
  if (!g[REGISTRY]) g[REGISTRY] = new Map();
  return {
    locks: "locks" in env ? orNull(env.locks) : safe(() => g.navigator?.locks),
    localStorage: "localStorage" in env ? orNull(env.localStorage) : safe(() => g.localStorage),
    sessionStorage: "sessionStorage" in env ? orNull(env.sessionStorage) : safe(() => g.sessionStorage),
    BroadcastChannel: "BroadcastChannel" in env ? orNull(env.BroadcastChannel) : safe(() => g.BroadcastChannel),
    cookie: typeof env.cookie === "function" ? env.cookie : () => safe(() => g.document?.cookie) ?? "",
    window: "window" in env ? orNull(env.window) : safe(() => (typeof g.addEventListener === "function" ? g : null)),
    registry: env.registry ?? g[REGISTRY],
  };
}

/** @param {Record<string, any>} options */
export function normalizeOptions(options) {
  const env = normalizeEnv(options.env ?? {});
  const origin = /** @type {any} */ (globalThis).location?.origin;
  const base = options.baseUrl ?? origin;
  if (!base) throw new TypeError("createClient: baseUrl is required outside a browser page");
  const baseUrl = String(new URL(String(base))).replace(/\/+$/, "");
  const mode = options.mode ?? "cookie";
  if (mode !== "cookie" && mode !== "token") throw new TypeError('createClient: mode is "cookie" or "token"');
  let storage = null;
  let storageName = "memory";
  if (mode === "token" && options.storage && options.storage !== "memory") {
    storageName = typeof options.storage === "string" ? options.storage : "custom";
    storage = options.storage === "localStorage" ? env.localStorage
      : options.storage === "sessionStorage" ? env.sessionStorage
      : options.storage;
    if (!storage) throw new TypeError(`createClient: ${storageName} is not available here`);
  }
  const fetchImpl = options.fetch ?? /** @type {any} */ (globalThis).fetch?.bind(globalThis);
  if (typeof fetchImpl !== "function") throw new TypeError("createClient: no fetch available");
  return {
    baseUrl,
    origin: new URL(baseUrl).origin,
    mode,
    storage,
    storageName,
    env,
    fetch: fetchImpl,
    retry: normalizeRetry(options.retry),
    timeout: options.timeout ?? 30_000,
    lockTimeout: options.lockTimeout ?? 3_000,
    onSessionExpired: options.onSessionExpired ?? null,
    onError: options.onError ?? null,
  };
}

/**
 * `input` against the base URL: absolute URLs as they are; a path is appended
 * to the base URL's own path (so a base of https://x.test/auth serves "/api/v1/...").
 * @param {string} baseUrl
 * @param {string | URL} input
 */
export function resolveUrl(baseUrl, input) {
  const text = String(input);
  if (/^[a-z][a-z\d+.-]*:/i.test(text)) return text;
  if (text.startsWith("//")) return new URL(text, baseUrl).href;
  return `${baseUrl}/${text.replace(/^\/+/, "")}`;
}
