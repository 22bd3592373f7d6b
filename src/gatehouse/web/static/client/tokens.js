/**
 * Where token mode keeps its tokens: in memory (default: this tab only, gone on
 * reload), or in sessionStorage / localStorage / any Storage-like object the
 * app passes (localStorage: every tab of the origin shares one session).
 * Cookie mode keeps no token in script reach at all.
 */

/**
 * @typedef {{access_token: string, refresh_token: string}} Tokens
 * @typedef {{read(): Tokens | null, write(tokens: Tokens): void, clear(): void}} TokenStore
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void, removeItem(key: string): void}} StorageLike
 */

/** @returns {TokenStore} */
export function memoryTokenStore() {
  /** @type {Tokens | null} */
  let tokens = null;
  return {
    read: () => tokens,
    write(value) {
      tokens = value;
    },
    clear() {
      tokens = null;
    },
  };
}

/**
 * @param {StorageLike} storage
 * @param {string} key
 * @returns {TokenStore}
 */
export function storageTokenStore(storage, key) {
  return {
    read() {
      try {
        const raw = storage.getItem(key);
        const value = raw ? JSON.parse(raw) : null;
        return value && typeof value.access_token === "string" ? value : null;
      } catch {
        return null;
      }
    },
    write(value) {
      storage.setItem(key, JSON.stringify({
        access_token: value.access_token, refresh_token: value.refresh_token,
      }));
    },
    clear() {
      try {
        storage.removeItem(key);
      } catch {
        // nothing to clear
      }
    },
  };
}
