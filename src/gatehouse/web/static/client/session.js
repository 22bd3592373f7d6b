/**
 * The session of one tab: who is signed in, until when the access token
 * lives, and the proactive refresh before that. Every client of a tab with the
 * same base URL and mode shares one `SharedSession` (a framework that mounts
 * twice gets one session and one refresh). In cookie mode, and in token mode
 * with localStorage, the tabs of the origin share the session too: its state
 * (expiry, session id; never a token) is published to localStorage and to the
 * tab channel, and a tab adopts any newer state it hears of.
 */
import { createTabLock } from "./lock.js";
import { refreshSession } from "./refresh.js";
import { openTabChannel } from "./tabs.js";
import { memoryTokenStore, storageTokenStore } from "./tokens.js";
import { CSRF_COOKIE, readCookie } from "./csrf.js";

/**
 * @typedef {import("./tokens.js").TokenStore} TokenStore
 * @typedef {import("./refresh.js").AuthSend} AuthSend
 * @typedef {{onSessionExpired: ((code: string) => void) | null,
 *   onError: ((error: any) => void) | null, send: AuthSend}} Member
 */

/** After a proactive refresh failed: try again this much later (ms). */
export const RETRY_FAILED_REFRESH_MS = 2000;

/**
 * Refresh this long before the access token expires: a fifth of its life,
 * at least half a second, at most a minute; plus up to half that again at
 * random per tab, so the tabs' timers do not fire together.
 * @param {number} lifetime ms
 */
export function refreshLead(lifetime) {
  return Math.min(60_000, Math.max(500, lifetime * 0.2));
}

export class SharedSession {
  /** @param {any} config the normalised options of the first client */
  constructor(config) {
    this.config = config;
    const env = config.env;
    this.key = `gatehouse:${config.baseUrl}:${config.mode}`;
    /** Whether the tabs of the origin share this session (cookie mode, token mode in localStorage). */
    this.crossTab = config.mode === "cookie" || (env.localStorage !== null && config.storage === env.localStorage);
    /** This tab's id in messages about tab-local sessions. */
    this.scope = this.crossTab ? "origin" : Math.random().toString(36).slice(2);
    /** @type {TokenStore | null} */
    this.tokens = config.mode === "token"
      ? (config.storage ? storageTokenStore(config.storage, `${this.key}:tokens`) : memoryTokenStore())
      : null;
    /** @type {import("../gatehouse-client.js").User | null} */
    this.user = null;
    /** @type {string | null} */
    this.sessionId = null;
    /** When this tab learned of the current access token (ms); the token's identity. */
    this.issuedAt = 0;
    /** @type {number | null} when the access token expires (ms, this machine's clock) */
    this.expiresAt = null;
    /** @type {string | null} the gh_csrf value of a session that ended: its cookie is no session */
    this.deadCsrf = null;
    this.hasSession = this.storedSession();
    /** @type {Promise<boolean> | null} the refresh in flight in this tab */
    this.inflight = null;
    /** @type {Set<AbortController>} refreshes waiting for the lock: aborted when an outcome arrives */
    this.waiters = new Set();
    /** How many `released` messages (another tab let go of the refresh lock) this tab has heard. */
    this.releases = 0;
    /** @type {Set<() => void>} called on each `released` message */
    this.releaseListeners = new Set();
    /** @type {Set<Member>} */
    this.members = new Set();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    /** Above 0 while this tab logs out or restores: its own end of session shows no notice. */
    this.quiet = 0;
    this.lock = createTabLock({
      name: `${this.key}:refresh`,
      locks: this.crossTab ? env.locks : null,
      storage: this.crossTab ? env.localStorage : null,
    });
    this.channel = openTabChannel({
      name: `gatehouse:${config.baseUrl}`,
      BroadcastChannel: env.BroadcastChannel,
      storage: env.localStorage,
      target: env.window,
      onMessage: (message) => this.receive(message),
    });
    this.syncFromStore();
  }

  /** @param {Member} member */
  attach(member) {
    this.members.add(member);
    this.schedule();
  }

  /** @param {Member} member */
  detach(member) {
    this.members.delete(member);
    if (this.members.size === 0 && this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  // -- state shared between tabs ---------------------------------------------------

  get stateKey() {
    return `${this.key}:state`;
  }

  /**
   * Cookie mode: whether the cookies hold a session. The readable gh_csrf
   * cookie is bound to its session, so one left by a session that ended here
   * does not count (the server clears cookies only on logout).
   */
  cookieSession() {
    const csrf = readCookie(this.config.env.cookie(), CSRF_COOKIE);
    return csrf !== null && csrf !== this.deadCsrf;
  }

  /** Whether the cookies (cookie mode) or the token storage (token mode) hold a session. */
  storedSession() {
    return this.config.mode === "cookie" ? this.cookieSession() : this.tokens?.read() != null;
  }

  /** Adopts the state another tab left in localStorage, if it is newer; notices a
   *  session that another tab opened (its cookies, or its stored tokens, are ours too). */
  syncFromStore() {
    if (!this.hasSession && this.storedSession()) this.hasSession = true;
    if (!this.crossTab) return;
    try {
      const raw = this.config.env.localStorage?.getItem(this.stateKey);
      if (raw) this.adopt(JSON.parse(raw));
    } catch {
      // unreadable: keep what this tab knows
    }
  }

  /** @param {Record<string, any>} state */
  adopt(state) {
    if (typeof state.issuedAt !== "number" || state.issuedAt <= this.issuedAt) return;
    if (!state.hasSession) return; // an end arrives as its own message
    // In cookie mode a live gh_csrf cookie is what a session is; state can outlive it.
    if (this.config.mode === "cookie" && !this.cookieSession()) return;
    this.issuedAt = state.issuedAt;
    this.expiresAt = typeof state.expiresAt === "number" ? state.expiresAt : null;
    if (state.sessionId) this.sessionId = state.sessionId;
    if (state.user) this.user = state.user;
    this.hasSession = true;
    for (const waiter of this.waiters) waiter.abort();
    this.schedule();
  }

  publish() {
    const state = {
      issuedAt: this.issuedAt, expiresAt: this.expiresAt, sessionId: this.sessionId, hasSession: this.hasSession,
    };
    if (this.crossTab) {
      try {
        this.config.env.localStorage?.setItem(this.stateKey, JSON.stringify(state));
      } catch {
        // storage full or denied: the channel still carries it
      }
    }
    this.channel.post({ type: "state", scope: this.scope, ...state, user: this.user });
  }

  /**
   * Resolves when another tab's `released` message arrives, or after `ms`;
   * rejects with the signal's reason when `signal` aborts (a newer session
   * was adopted, or the session ended). The storage is read meanwhile too.
   * @param {number} ms
   * @param {AbortSignal} signal
   * @returns {Promise<void>}
   */
  heardRelease(ms, signal) {
    return new Promise((resolve, reject) => {
      const stop = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.releaseListeners.delete(done);
        signal.removeEventListener("abort", aborted);
      };
      const done = () => {
        stop();
        resolve();
      };
      const aborted = () => {
        stop();
        reject(signal.reason);
      };
      const timer = setTimeout(done, ms);
      const poll = setInterval(() => this.syncFromStore(), 50);
      this.releaseListeners.add(done);
      if (signal.aborted) aborted();
      else signal.addEventListener("abort", aborted, { once: true });
    });
  }

  /** @param {Record<string, any>} message */
  receive(message) {
    if (message.type === "state" && message.scope === this.scope) {
      this.adopt(message);
    } else if (message.type === "released" && message.scope === this.scope) {
      this.releases += 1;
      for (const listener of [...this.releaseListeners]) listener();
    } else if (message.type === "ended") {
      const sameScope = message.scope === this.scope;
      const sameUser = message.all === true && this.user !== null && message.userId === this.user.id;
      const sameSession = !message.sessionId || !this.sessionId || message.sessionId === this.sessionId;
      if ((sameScope && sameSession) || sameUser) {
        this.end(message.code, { notify: true, broadcast: false });
      }
    }
  }

  // -- the session's life ----------------------------------------------------------

  nextIssuedAt() {
    return Math.max(Date.now(), this.issuedAt + 1);
  }

  /**
   * A login or refresh answer: new access token, expiry, maybe tokens and user.
   * @param {Record<string, any>} body
   * @param {number} sentAt when the request that got this answer was sent (ms)
   */
  applyTokens(body, sentAt) {
    this.issuedAt = this.nextIssuedAt();
    this.expiresAt = typeof body.expires_in === "number" ? sentAt + body.expires_in * 1000 : null;
    if (typeof body.session_id === "string") this.sessionId = body.session_id;
    if (body.user) this.user = body.user;
    if (this.tokens && typeof body.access_token === "string") {
      this.tokens.write({ access_token: body.access_token, refresh_token: body.refresh_token });
    }
    this.hasSession = true;
    this.publish();
    this.schedule();
  }

  /**
   * Ends the session in this tab; `notify` fires onSessionExpired once (never
   * for the tab that logs out), `broadcast` tells the other tabs.
   * @param {string} code
   * @param {{notify: boolean, broadcast: boolean, all?: boolean}} how
   */
  end(code, { notify, broadcast, all = false }) {
    const had = this.hasSession;
    const userId = this.user?.id ?? null;
    const sessionId = this.sessionId;
    this.hasSession = false;
    if (this.config.mode === "cookie") this.deadCsrf = readCookie(this.config.env.cookie(), CSRF_COOKIE);
    this.user = null;
    this.sessionId = null;
    this.expiresAt = null;
    this.issuedAt = this.nextIssuedAt();
    this.tokens?.clear();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const waiter of this.waiters) waiter.abort();
    if (this.crossTab && broadcast) {
      try {
        this.config.env.localStorage?.setItem(this.stateKey, JSON.stringify({
          issuedAt: this.issuedAt, expiresAt: null, sessionId: null, hasSession: false,
        }));
      } catch {
        // the message below still reaches the tabs
      }
    }
    if (broadcast) this.channel.post({ type: "ended", scope: this.scope, code, sessionId, userId, all });
    if (notify && had && this.quiet === 0) {
      for (const member of [...this.members]) {
        try {
          member.onSessionExpired?.(code);
        } catch (error) {
          member.onError?.(error);
        }
      }
    }
  }

  /**
   * Arms the proactive refresh of the current access token. One that fails
   * (server unreachable, 5xx: its own retries are spent) is no error for the
   * app: requests go on with the current token, and it is tried again after a
   * cool-down; once the token has expired, the next request refreshes anyway.
   * @param {number} [retryIn] ms: a retry after a failed proactive refresh
   */
  schedule(retryIn) {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (!this.hasSession || this.expiresAt === null || this.members.size === 0) return;
    const lifetime = Math.max(0, this.expiresAt - this.issuedAt);
    const lead = refreshLead(lifetime);
    const at = retryIn !== undefined ? Date.now() + retryIn
      : this.expiresAt - lead - Math.random() * Math.min(lead / 2, 5000);
    const observed = this.issuedAt;
    this.timer = setTimeout(() => {
      this.timer = null;
      const member = [...this.members][0];
      if (!member) return;
      refreshSession(this, observed, member.send).catch(() => {
        if (this.issuedAt === observed) this.schedule(RETRY_FAILED_REFRESH_MS);
      });
    }, Math.max(0, at - Date.now()));
  }

  /**
   * Before a request: wait for a refresh in flight, refresh first when the
   * access token has already expired. The issuedAt of the token it will use.
   * @param {AuthSend} send
   */
  async ready(send) {
    this.syncFromStore();
    if (!this.hasSession) return this.issuedAt;
    if (this.inflight) await this.inflight.catch(() => false);
    if (this.hasSession && this.expiresAt !== null && Date.now() >= this.expiresAt - 100) {
      await refreshSession(this, this.issuedAt, send).catch(() => false);
    }
    return this.issuedAt;
  }
}

/**
 * The tab's shared session for these options: one per base URL and mode.
 * @param {any} config
 * @returns {SharedSession}
 */
export function sharedSessionFor(config) {
  /** @type {Map<string, SharedSession>} */
  const registry = config.env.registry;
  const key = `${config.baseUrl}|${config.mode}|${config.storageName}`;
  let shared = registry.get(key);
  if (!shared) {
    shared = new SharedSession(config);
    registry.set(key, shared);
  }
  return shared;
}
