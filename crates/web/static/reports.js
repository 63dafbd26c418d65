// The new-report form's script (a static file: the Content-Security-Policy forbids inline
// scripts). Photos go straight to the blob store, the S3 way: for each chosen file it computes
// the SHA-256, asks the site for a signed URL (POST /reports/uploads, with the form's CSRF
// token), PUTs the file there with the headers it was given, and adds a hidden
// <input name="photo"> with the upload's id; the file input is cleared, so the form carries no
// file bytes. It also offers open reports of the same kind close by (possible duplicates) as
// the place and the kind change, fills the place in from a chosen station, and offers the
// device's location. Without it the form works, without photos.
"use strict";

(function reportForm() {
  var form = document.querySelector("form[data-report-form]");
  if (!form) { return; }
  var csrf = form.querySelector("input[name=csrf]").value;
  var max = Number(form.getAttribute("data-max-photos")) || 5;
  var input = form.querySelector("[data-photos]");
  var list = form.querySelector("[data-photo-list]");
  var status = form.querySelector("[data-upload-status]");
  var submit = form.querySelector("[data-report-submit]");
  var lat = form.querySelector("#lat"), lon = form.querySelector("#lon");
  var category = form.querySelector("#category"), station = form.querySelector("[data-station-select]");
  var busy = 0;

  function say(text) { status.textContent = text; }
  function photoCount() { return form.querySelectorAll("input[name=photo]").length; }
  function setBusy(delta) {
    busy += delta;
    submit.disabled = busy > 0;
  }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function problem(r) {
    return r.json().then(function (j) { return j.detail || ("the server said " + r.status); },
      function () { return "the server said " + r.status; });
  }

  // Asks for a signed URL for the file, then PUTs it there; resolves with the upload's id.
  function upload(file) {
    return file.arrayBuffer().then(function (bytes) {
      return crypto.subtle.digest("SHA-256", bytes);
    }).then(function (digest) {
      var body = new URLSearchParams({ csrf: csrf, content_type: file.type, size: String(file.size), sha256: hex(digest) });
      return fetch(form.getAttribute("data-sign-url"), { method: "POST", credentials: "same-origin", body: body });
    }).then(function (r) {
      if (!r.ok) { return problem(r).then(function (m) { throw new Error(m); }); }
      return r.json();
    }).then(function (signed) {
      var headers = new Headers();
      Object.keys(signed.headers || {}).forEach(function (name) {
        if (name.toLowerCase() !== "content-length") { headers.set(name, signed.headers[name]); }
      });
      return fetch(signed.url, { method: signed.method || "PUT", headers: headers, body: file }).then(function (r) {
        if (!r.ok) { return problem(r).then(function (m) { throw new Error(m); }); }
        return signed.id;
      });
    });
  }

  function added(file, id) {
    var item = document.createElement("li");
    var hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = "photo"; hidden.value = id;
    var name = document.createElement("span");
    name.textContent = file.name + " (uploaded)";
    var remove = document.createElement("button");
    remove.type = "button"; remove.className = "secondary"; remove.textContent = "Remove";
    remove.setAttribute("aria-label", "Remove " + file.name);
    remove.addEventListener("click", function () {
      item.remove(); say(file.name + " removed."); input.focus();
    });
    item.appendChild(hidden); item.appendChild(name); item.appendChild(remove);
    list.appendChild(item);
  }

  if (input) {
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      input.value = "";
      if (!files.length) { return; }
      if (!window.crypto || !crypto.subtle) { say("Photos cannot be uploaded from this page (it needs HTTPS)."); return; }
      var room = max - photoCount() - busy;
      if (files.length > room) {
        say("A report carries at most " + max + " photos; " + (room > 0 ? "only the first " + room + " are uploaded." : "remove one first."));
        files = files.slice(0, Math.max(room, 0));
      }
      var done = 0, failed = [];
      files.forEach(function (file) {
        setBusy(1);
        say("Uploading " + files.length + (files.length === 1 ? " photo…" : " photos…"));
        upload(file).then(function (id) { added(file, id); }, function (e) { failed.push(file.name + ": " + e.message); })
          .then(function () {
            setBusy(-1); done += 1;
            if (done < files.length) { say("Uploaded " + done + " of " + files.length + "…"); return; }
            say(failed.length ? "Not uploaded: " + failed.join("; ") + "." : (files.length === 1 ? "The photo is uploaded." : "The photos are uploaded."));
          });
      });
    });
  }

  // A chosen station fills in its place when none is given.
  if (station) {
    station.addEventListener("change", function () {
      var o = station.options[station.selectedIndex];
      if (o && o.getAttribute("data-lat") && !lat.value && !lon.value) {
        lat.value = o.getAttribute("data-lat"); lon.value = o.getAttribute("data-lon");
        nearby();
      }
    });
  }

  var locateBox = form.querySelector("[data-locate-box]");
  if (locateBox && navigator.geolocation) {
    locateBox.hidden = false;
    locateBox.querySelector("[data-locate]").addEventListener("click", function () {
      say("Asking your device for its location…");
      navigator.geolocation.getCurrentPosition(function (p) {
        lat.value = p.coords.latitude.toFixed(5); lon.value = p.coords.longitude.toFixed(5);
        say("The place is your location."); nearby();
      }, function (e) { say("Your location is not available: " + e.message + "."); });
    });
  }

  // Possible duplicates: open reports of the same kind close by.
  var box = form.querySelector("[data-duplicates]");
  var dupList = form.querySelector("[data-duplicates-list]");
  var timer = null;
  function show(reports) {
    dupList.textContent = "";
    reports.forEach(function (r) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "/reports/" + encodeURIComponent(r.id); a.textContent = r.title;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" (" + r.state_label + ", " + r.category_label + ")"));
      dupList.appendChild(li);
    });
    box.hidden = reports.length === 0;
  }
  function nearby() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var la = Number(lat.value), lo = Number(lon.value);
      if (!lat.value || !lon.value || !isFinite(la) || !isFinite(lo)) { show([]); return; }
      var q = new URLSearchParams({ lat: String(la), lon: String(lo) });
      if (category.value) { q.set("category", category.value); }
      fetch(form.getAttribute("data-nearby-url") + "?" + q.toString(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(show, function () { show([]); });
    }, 400);
  }
  [lat, lon, category].forEach(function (el) { el.addEventListener("change", nearby); });
  nearby();
})();
