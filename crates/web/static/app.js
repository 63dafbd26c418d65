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

// Chart tooltips: a figure carries its plot area (in SVG units), axis ranges and points
// (epoch seconds, value) in data attributes; the nearest point to the pointer is shown.
function fmtTime(ts) {
  var d = new Date(ts * 1000);
  return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}
document.querySelectorAll("figure.chart[data-points]").forEach(function (fig) {
  var svg = fig.querySelector("svg");
  if (!svg) { return; }
  var pts = fig.getAttribute("data-points").split(";").filter(Boolean).map(function (p) {
    var a = p.split(","); return [Number(a[0]), Number(a[1]), a.length > 2 ? Number(a[2]) : NaN, a.length > 3 ? Number(a[3]) : NaN];
  });
  if (!pts.length) { return; }
  var area = fig.getAttribute("data-area").split(",").map(Number); // x0,x1,y0,y1 in SVG units
  var range = fig.getAttribute("data-range").split(",").map(Number); // t0,t1,v0,v1
  var unit = fig.getAttribute("data-unit") || "";
  var vb = svg.viewBox.baseVal;
  var tip = document.createElement("div");
  tip.className = "tooltip"; tip.hidden = true; tip.setAttribute("role", "status");
  fig.appendChild(tip);
  function show(clientX) {
    var r = svg.getBoundingClientRect();
    var sx = (clientX - r.left) / r.width * vb.width;
    if (sx < area[0] || sx > area[1]) { tip.hidden = true; return; }
    var t = range[0] + (sx - area[0]) / (area[1] - area[0]) * (range[1] - range[0]);
    var best = pts[0];
    pts.forEach(function (p) { if (Math.abs(p[0] - t) < Math.abs(best[0] - t)) { best = p; } });
    var px = area[0] + (best[0] - range[0]) / (range[1] - range[0]) * (area[1] - area[0]);
    var py = area[3] - (best[1] - range[2]) / (range[3] - range[2]) * (area[3] - area[2]);
    var text = fmtTime(best[0]) + ": " + best[1].toFixed(1) + " " + unit;
    if (!isNaN(best[2])) { text += " (" + best[2].toFixed(1) + "–" + best[3].toFixed(1) + ")"; }
    tip.textContent = text;
    tip.style.left = (px / vb.width * r.width) + "px";
    tip.style.top = (Math.max(area[2], Math.min(py, area[3])) / vb.height * r.height) + "px";
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
