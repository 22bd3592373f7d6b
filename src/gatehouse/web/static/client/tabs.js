/**
 * Messages between the tabs of an origin: a BroadcastChannel, or where there
 * is none, `storage` events on a localStorage key (every other tab gets them).
 * Messages carry no secret: session state (expiry, session id, user) and the
 * end of a session. A tab never receives its own messages.
 */

/**
 * @typedef {{post(message: Record<string, unknown>): void, close(): void}} TabChannel
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void, removeItem(key: string): void}} StorageLike
 */

/**
 * @param {{name: string, BroadcastChannel: (typeof BroadcastChannel) | null,
 *   storage: StorageLike | null, target: EventTarget | null,
 *   onMessage: (message: Record<string, any>) => void}} options
 * @returns {TabChannel}
 */
export function openTabChannel({ name, BroadcastChannel: Channel, storage, target, onMessage }) {
  if (Channel) {
    const channel = new Channel(name);
    channel.onmessage = (event) => {
      if (event.data && typeof event.data === "object") onMessage(event.data);
    };
    // Node's BroadcastChannel would keep a test process alive; browsers ignore unref.
    /** @type {any} */ (channel).unref?.();
    return {
      post: (message) => channel.postMessage(message),
      close: () => channel.close(),
    };
  }
  if (storage && target) {
    const key = `${name}:message`;
    /** @param {Event} event */
    const listener = (event) => {
      const { key: changed, newValue } = /** @type {StorageEvent} */ (event);
      if (changed !== key || !newValue) return;
      try {
        onMessage(JSON.parse(newValue).message);
      } catch {
        // another version's message: ignore
      }
    };
    target.addEventListener("storage", listener);
    return {
      post(message) {
        try {
          // The nonce makes repeated messages distinct, so each fires a storage event.
          storage.setItem(key, JSON.stringify({ message, nonce: Math.random() }));
        } catch {
          // storage denied: other tabs learn on their next request instead
        }
      },
      close: () => target.removeEventListener("storage", listener),
    };
  }
  return { post() {}, close() {} };
}
