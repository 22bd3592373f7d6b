// The console's service worker: shows the Web Push notifications Gatehouse sends.

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = {body: event.data ? event.data.text() : ""}; }
  const title = data.title || "Gatehouse";
  event.waitUntil(self.registration.showNotification(title, {
    body: data.body || "",
    icon: "/static/console/favicon.svg",
    data: {url: data.url || "/console/account"},
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/console/account";
  event.waitUntil(self.clients.openWindow(url));
});
