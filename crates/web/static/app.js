// EcoCityHub's first-party script: progressive enhancements only; every page works without it.
// Loaded as an external file (the Content-Security-Policy forbids inline scripts).
"use strict";

// Selects marked data-autosubmit submit their form when changed.
document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
  el.addEventListener("change", function () { el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit(); });
});

// Buttons marked data-confirm ask before their form is sent.
document.querySelectorAll("[data-confirm]").forEach(function (el) {
  el.addEventListener("click", function (e) {
    if (!window.confirm(el.getAttribute("data-confirm"))) { e.preventDefault(); }
  });
});

// Chart tooltips: a figure carries its axis ranges and points (epoch seconds, value) in data
// attributes; the chart's plot area is its rect.plot-area (the SVG has no viewBox: positions are
// taken from the page). The nearest point to the pointer is shown; a wind direction
// (data-compass) as a compass point.
function fmtTime(ts) {
  var d = new Date(ts * 1000);
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}
var COMPASS = ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW"];
function fmtCompass(deg) {
  var d = ((deg % 360) + 360) % 360;
  return COMPASS[Math.round(d / 22.5) % 16] + " " + Math.round(d) + "°";
}
document.querySelectorAll("figure.chart[data-points]").forEach(function (fig) {
  var svg = fig.querySelector("svg");
  var plot = svg && svg.querySelector(".plot-area");
  if (!plot) { return; }
  var pts = fig.getAttribute("data-points").split(";").filter(Boolean).map(function (p) {
    var a = p.split(","); return [Number(a[0]), Number(a[1]), a.length > 2 ? Number(a[2]) : NaN, a.length > 3 ? Number(a[3]) : NaN];
  });
  if (!pts.length) { return; }
  var range = fig.getAttribute("data-range").split(",").map(Number); // t0,t1,v0,v1
  var unit = fig.getAttribute("data-unit") || "";
  var compass = fig.hasAttribute("data-compass");
  function value(v) { return compass ? fmtCompass(v) : v.toFixed(1) + " " + unit; }
  var tip = document.createElement("div");
  tip.className = "tooltip"; tip.hidden = true; tip.setAttribute("role", "status");
  fig.appendChild(tip);
  function show(clientX) {
    var r = plot.getBoundingClientRect(), f = fig.getBoundingClientRect();
    var fx = (clientX - r.left) / r.width;
    if (fx < 0 || fx > 1) { tip.hidden = true; return; }
    var t = range[0] + fx * (range[1] - range[0]);
    var best = pts[0];
    pts.forEach(function (p) { if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) { best = p; } });
    var px = r.left - f.left + (best[0] - range[0]) / (range[1] - range[0]) * r.width;
    var fy = 1 - (best[1] - range[2]) / (range[3] - range[2]);
    var text = fmtTime(best[0]) + ": " + value(best[1]);
    if (!isNaN(best[2])) { text += " (" + best[2].toFixed(1) + "–" + best[3].toFixed(1) + ")"; }
    tip.textContent = text;
    tip.style.left = Math.max(60, Math.min(px, f.width - 60)) + "px";
    tip.style.top = (r.top - f.top + Math.max(0, Math.min(fy, 1)) * r.height) + "px";
    tip.hidden = false;
  }
  svg.addEventListener("pointermove", function (e) { show(e.clientX); });
  svg.addEventListener("pointerleave", function () { tip.hidden = true; });
});

// A training job's page follows the job live until it ends. (In a function: a global named
// `status` would be the window's.)
(function followJob() {
  var job = document.querySelector("[data-job-status-url]");
  if (!job) { return; }
  var url = job.getAttribute("data-job-status-url");
  var bar = job.querySelector("progress");
  var badge = job.querySelector("[data-job-status]");
  var message = job.querySelector("[data-job-message]");
  var log = job.querySelector("pre.log");
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (j) {
        bar.value = j.progress; bar.textContent = Math.round(j.progress * 100) + "%";
        badge.textContent = j.status; badge.className = "badge " + j.status;
        message.textContent = j.message || "";
        log.textContent = j.log;
        if (j.status === "queued" || j.status === "running") { setTimeout(poll, 1000); return; }
        job.setAttribute("data-finished", j.status);
        var done = job.querySelector("[data-when-finished]");
        if (done) { done.hidden = false; }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (job.getAttribute("data-finished") === null) { poll(); }
})();

// Signed-in pages show the user's live alerts as they arrive (the "this site" channel): a
// banner per message, from the session's event stream. The browser reconnects by itself with
// Last-Event-ID, so nothing is missed; a refused stream (signed out) is not retried.
(function liveAlerts() {
  var url = document.body.getAttribute("data-live-events");
  if (!url || !window.EventSource) { return; }
  var box = document.createElement("div");
  box.className = "live-alerts"; box.setAttribute("aria-live", "polite");
  var main = document.querySelector("main");
  main.insertBefore(box, main.firstChild);
  function show(e) {
    var m; try { m = JSON.parse(e.data); } catch (_) { return; }
    var banner = document.createElement("div");
    banner.className = "flash live"; banner.setAttribute("role", "status");
    var title = document.createElement("strong"); title.textContent = m.subject || "Alert";
    var text = document.createElement("p"); text.textContent = m.text || "";
    var close = document.createElement("button");
    close.type = "button"; close.className = "secondary"; close.textContent = "Dismiss";
    close.addEventListener("click", function () { banner.remove(); });
    banner.appendChild(title); banner.appendChild(text); banner.appendChild(close);
    box.insertBefore(banner, box.firstChild);
    while (box.children.length > 5) { box.removeChild(box.lastChild); }
  }
  var source = new EventSource(url);
  ["alert.opened", "alert.cleared", "alert.digest", "forecast.alert", "test", "message"].forEach(function (kind) {
    source.addEventListener(kind, show);
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) { source.close(); }
  });
})();

// "Enable browser notifications" on My alerts: registers the service worker, subscribes with
// the server's VAPID key and sends the subscription as a form (with the page's CSRF token).
(function browserPush() {
  var box = document.querySelector("[data-push-key]");
  if (!box || !("serviceWorker" in navigator) || !("PushManager" in window) || !window.Notification) { return; }
  box.hidden = false;
  var status = box.querySelector("[data-push-status]");
  function key(b64) {
    var s = (b64 + "===".slice((b64.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(s), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out;
  }
  box.querySelector("[data-push-enable]").addEventListener("click", function () {
    status.textContent = "Asking your browser…";
    Notification.requestPermission().then(function (p) {
      if (p !== "granted") { throw new Error("notifications are not allowed for this site"); }
      return navigator.serviceWorker.register("/sw.js", { scope: "/" });
    }).then(function () { return navigator.serviceWorker.ready; })
      .then(function (reg) {
        return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key(box.getAttribute("data-push-key")) });
      }).then(function (sub) {
        var j = sub.toJSON();
        var body = new URLSearchParams({ csrf: box.getAttribute("data-csrf"), endpoint: j.endpoint, p256dh: j.keys.p256dh, auth: j.keys.auth });
        return fetch(box.getAttribute("data-push-url"), { method: "POST", credentials: "same-origin", body: body });
      }).then(function (r) {
        if (!r.ok) { throw new Error("the server said " + r.status); }
        window.location.reload();
      }).catch(function (e) { status.textContent = "Browser notifications could not be turned on: " + e.message + "."; });
  });
})();

// The map pans and zooms by the links under it (they work without this script); with the map
// focused, + and - zoom, the arrow keys move and 0 shows the whole region: each key follows
// the link marked with it (data-key).
(function mapKeys() {
  var map = document.querySelector("[data-map-keys]");
  if (!map) { return; }
  var links = {};
  document.querySelectorAll(".map-controls a[data-key]").forEach(function (a) {
    links[a.getAttribute("data-key")] = a;
  });
  var alias = { "=": "+", "_": "-", "Add": "+", "Subtract": "-" };
  map.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    var link = links[alias[e.key] || e.key];
    if (!link) { return; }
    e.preventDefault();
    window.location.assign(link.href);
  });
})();
