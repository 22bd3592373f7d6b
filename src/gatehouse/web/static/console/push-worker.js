// The console's service worker (API.md §10): shows the Web Push notifications Gatehouse
// sends, and brings the console forward when one is clicked. It has no fetch handler, so
// it never stands between the console and the network. Served from /static/ with
// `Service-Worker-Allowed: /console/` and registered with that scope, so it belongs to
// the console's pages.

const CONSOLE = "/console/";
const LANDING = "/console/account"; // where the account's security events are reviewed

// A new version takes over at once: it only reacts to pushes and clicks.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

/** The payload `{"type","title","body","at"}`; a non-JSON one is shown as its text. */
function readPayload(data) {
  if (!data) return {};
  try {
    const parsed = data.json();
    return parsed && typeof parsed === "object" ? parsed : {body: String(parsed)};
  } catch {
    return {body: data.text()};
  }
}

self.addEventListener("push", (event) => {
  const payload = readPayload(event.data);
  const at = Date.parse(payload.at);
  event.waitUntil(self.registration.showNotification(payload.title || "Gatehouse", {
    body: payload.body || "",
    icon: "/static/console/favicon.svg",
    // One notice per kind of event: a second sign-in alert replaces the first, not piles up.
    tag: typeof payload.type === "string" ? payload.type : "gatehouse",
    renotify: true,
    timestamp: Number.isNaN(at) ? Date.now() : at,
    data: {type: payload.type || null},
  }));
});

// Focus an open console tab, or open the account page (where the events are reviewed). The target is
// fixed here, never taken from the payload, so a notification cannot open another site.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({type: "window", includeUncontrolled: true});
    const open = windows.find((client) => new URL(client.url).pathname.startsWith(CONSOLE));
    // An open tab is only focused, not navigated: it may hold a half-filled form.
    if (open) await open.focus();
    else await self.clients.openWindow(LANDING);
  })());
});
