// palisade console: applies the witness's server-sent events to the page.
// The server renders every fragment; this script only swaps them in, keeps
// the countdowns ticking and records when each failover step first showed
// (window.palisadeShown: "epoch:stage" -> Date.now(), for the latency
// measurement in tests/console.rs and docs/console.md). No polling: the
// page opens one EventSource to the witness it was loaded from.
(function () {
  "use strict";
  var shown = (window.palisadeShown = window.palisadeShown || {});

  function stamp(root) {
    root.querySelectorAll("[data-step-key]").forEach(function (el) {
      if (el.getAttribute("data-state") !== "done") return;
      var key = el.getAttribute("data-step-key");
      if (!(key in shown)) shown[key] = Date.now();
      el.setAttribute("data-shown-at", String(shown[key]));
    });
  }

  function words(ms) {
    if (ms <= 0) return "expired";
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.floor((ms % 60000) / 1000) + " s";
  }

  // Relative countdowns become absolute when they arrive.
  function arm(root) {
    var now = Date.now();
    root.querySelectorAll("[data-remaining-ms]").forEach(function (el) {
      el.setAttribute("data-until-ms", String(now + Number(el.getAttribute("data-remaining-ms"))));
      el.removeAttribute("data-remaining-ms");
    });
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-until-ms]").forEach(function (el) {
      el.textContent = words(Number(el.getAttribute("data-until-ms")) - now);
    });
  }

  function replace(el, html) {
    // Keep open <details> open across updates.
    var open = {};
    el.querySelectorAll("details[data-key][open]").forEach(function (d) {
      open[d.getAttribute("data-key")] = true;
    });
    el.innerHTML = html;
    el.querySelectorAll("details[data-key]").forEach(function (d) {
      if (open[d.getAttribute("data-key")]) d.open = true;
    });
    stamp(el);
    arm(el);
  }

  function setLive(text, ok) {
    var el = document.getElementById("live");
    if (!el) return;
    el.textContent = text;
    el.className = ok ? "live ok" : "live bad";
  }

  function start() {
    stamp(document);
    arm(document);
    tick();
    window.setInterval(tick, 500);
    if (!window.EventSource) {
      setLive("static (no live updates in this browser)", false);
      return;
    }
    var es = new EventSource("/console/events");
    es.onopen = function () {
      setLive("● live", true);
    };
    es.onerror = function () {
      setLive("✖ disconnected: reconnecting…", false);
    };
    es.addEventListener("fragment", function (m) {
      var f = JSON.parse(m.data);
      f.targets.forEach(function (sel) {
        document.querySelectorAll(sel).forEach(function (el) {
          replace(el, f.html);
        });
      });
      document.body.setAttribute("data-updated-at", String(Date.now()));
    });
    es.addEventListener("log", function (m) {
      var e = JSON.parse(m.data);
      var list = document.getElementById("events");
      if (!list) return;
      var li = document.createElement("li");
      var t = document.createElement("time");
      t.dateTime = new Date(e.at_ms).toISOString();
      t.textContent = new Date(e.at_ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      li.appendChild(t);
      li.appendChild(document.createTextNode(" " + e.kind + ": " + e.text));
      li.setAttribute("data-kind", e.kind);
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 50) list.removeChild(list.lastChild);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
