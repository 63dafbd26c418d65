// EcoCityHub's service worker: shows the Web Push messages of the user's browser channel.
// Served at /sw.js (scope /); a message is the notification layer's event JSON.
"use strict";

self.addEventListener("push", function (event) {
  var m = {};
  try { m = event.data ? event.data.json() : {}; } catch (_) { m = { text: event.data ? event.data.text() : "" }; }
  event.waitUntil(self.registration.showNotification(m.subject || "EcoCityHub", {
    body: m.text || "",
    tag: m.id || undefined,
    data: { url: "/account/alerts" }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(self.clients.matchAll({ type: "window" }).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if ("focus" in list[i]) { return list[i].focus(); }
    }
    return self.clients.openWindow(url);
  }));
});
