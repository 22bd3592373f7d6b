// Browser notifications (Web Push, API.md §10): shown only when the server has VAPID keys.

import { call } from "../api.js";
import { busy, describeError, h, messages, replace } from "../dom.js";

const WORKER = "/static/console/push-worker.js";

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((base64url.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

export async function renderNotifications(section) {
  let publicKey;
  try {
    publicKey = (await call("GET", "/api/v1/push/vapid-public-key")).public_key;
  } catch {
    return; // 404: push is not configured on this server, so there is nothing to offer
  }
  const supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  const msg = messages();
  const button = h("button", {type: "button", class: "primary"}, "Turn on notifications");
  section.hidden = false;
  replace(section,
    h("h2", {id: "push-h"}, "Browser notifications"),
    h("div", {class: "card"},
      h("p", {class: "hint"}, "Get a notification in this browser when something important happens to your account, such as a sign-in from a new device."),
      msg.el,
      supported ? h("div", {class: "actions"}, button) : h("p", {}, "This browser does not support notifications.")));
  if (!supported) return;

  const registration = await navigator.serviceWorker.register(WORKER).catch(() => null);
  let subscription = registration ? await registration.pushManager.getSubscription() : null;
  const label = () => { button.textContent = subscription ? "Turn off notifications" : "Turn on notifications"; };
  label();
  button.addEventListener("click", () => busy(button, async () => {
    msg.clear();
    try {
      if (!registration) throw new Error("The notification worker could not start.");
      if (subscription) {
        await call("DELETE", "/api/v1/push/subscriptions", {endpoint: subscription.endpoint});
        await subscription.unsubscribe();
        subscription = null;
        msg.notice("Notifications are off for this browser.");
      } else {
        if (await Notification.requestPermission() !== "granted") {
          msg.error("Notifications are blocked for this site. Allow them in the browser's site settings.");
          return;
        }
        subscription = await registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: keyBytes(publicKey)});
        const json = subscription.toJSON();
        await call("POST", "/api/v1/push/subscriptions", {endpoint: json.endpoint, keys: json.keys});
        msg.notice("Notifications are on for this browser.");
      }
    } catch (error) {
      msg.error(describeError(error));
    } finally {
      label();
    }
  }));
}
