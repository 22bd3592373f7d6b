// "Browser notifications" (Web Push, API.md §10): subscribe this browser, or stop. Shown only
// when the server has VAPID keys. The service worker (push-worker.js) shows what arrives.

import { call } from "../api.js";
import { busy, describeError, h, messages, replace } from "../dom.js";

const WORKER = "/static/console/push-worker.js";
const SCOPE = "/console/"; // the server sends the worker with Service-Worker-Allowed: /console/

/** The VAPID key (base64url, as the server gives it) as the bytes `subscribe` wants. */
function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((base64url.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** Fill `block` (in the Notifications section) → true; false, and left hidden, without VAPID. */
export async function renderDevicePush(block) {
  let publicKey;
  try {
    publicKey = (await call("GET", "/api/v1/push/vapid-public-key")).public_key;
  } catch {
    return false; // 404: push is not configured on this server, so there is nothing to offer
  }
  const msg = messages();
  const state = h("strong", {}, "Off");
  const button = h("button", {type: "button", class: "primary"});
  block.hidden = false;
  replace(block,
    h("h3", {id: "push-h"}, "Browser notifications"),
    h("p", {class: "hint"}, "Alerts appear on this device even when the console is closed, "
      + "while \u201cBrowser push\u201d is on above. Turn them on in each browser you use."),
    supported()
      ? [h("p", {}, "On this device: ", state), msg.el, h("div", {class: "actions start"}, button)]
      : h("p", {}, "This browser cannot show notifications."));
  if (!supported()) return true;

  const registration = await navigator.serviceWorker.register(WORKER, {scope: SCOPE})
    .catch(() => null);
  let subscription = registration ? await registration.pushManager.getSubscription() : null;
  const show = () => {
    state.textContent = subscription ? "On" : "Off";
    state.className = subscription ? "status-on" : "";
    button.textContent = subscription ? "Disable notifications on this device"
      : "Enable notifications on this device";
    button.className = subscription ? "secondary" : "primary";
  };
  show();
  if (Notification.permission === "denied" && !subscription) {
    msg.error(BLOCKED);
  }

  button.addEventListener("click", () => busy(button, async () => {
    msg.clear();
    try {
      if (!registration) throw new Error("The notification worker could not start. Reload the page and try again.");
      if (subscription) {
        await call("DELETE", "/api/v1/push/subscriptions", {endpoint: subscription.endpoint});
        await subscription.unsubscribe().catch(() => false);
        subscription = null;
        msg.notice("Notifications are off for this device.");
      } else {
        subscription = await subscribe(registration, publicKey);
        if (subscription) msg.notice("Notifications are on for this device.");
        else msg.error(BLOCKED);
      }
    } catch (error) {
      msg.error(describeError(error));
    } finally {
      show();
    }
  }));
  return true;
}

const BLOCKED = "Notifications are blocked for this site. Allow them in the browser's site settings, then try again.";

/** Ask, subscribe, store on the server; a subscription the server refused is undone here too. */
async function subscribe(registration, publicKey) {
  if (await Notification.requestPermission() !== "granted") return null;
  const subscription = await registration.pushManager.subscribe(
    {userVisibleOnly: true, applicationServerKey: keyBytes(publicKey)});
  const json = subscription.toJSON();
  try {
    await call("POST", "/api/v1/push/subscriptions", {endpoint: json.endpoint, keys: json.keys});
  } catch (error) {
    await subscription.unsubscribe().catch(() => false);
    throw error;
  }
  return subscription;
}
