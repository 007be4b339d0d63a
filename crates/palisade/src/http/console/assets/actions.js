// palisade console: the operator's actions (served only on pages rendered
// for an operator certificate, docs/console.md "Actions"). A click on an
// action button opens a confirmation dialog stating what will happen; a
// forced failover needs the target site's name typed. Only "Confirm"
// sends the POST, with the page's token; the witness checks the
// certificate, the token and the typed name again.
(function () {
  "use strict";

  function start() {
    var panel = document.getElementById("actions");
    var dialog = document.getElementById("action-dialog");
    if (!panel || !dialog) return;
    var text = document.getElementById("action-dialog-text");
    var typed = document.getElementById("action-dialog-typed");
    var input = document.getElementById("action-dialog-input");
    var error = document.getElementById("action-dialog-error");
    var result = document.getElementById("action-result");
    var pending = null;

    // Delegated: the buttons are re-rendered with the status.
    panel.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-action]");
      if (!b) return;
      pending = {
        action: b.getAttribute("data-action"),
        to: b.getAttribute("data-to") || "",
        must: b.getAttribute("data-type-to-confirm"),
      };
      document.getElementById("action-dialog-title").textContent =
        "Confirm: " + b.textContent.replace("…", "").trim();
      text.textContent = b.getAttribute("data-confirm");
      error.textContent = "";
      input.value = "";
      typed.hidden = !pending.must;
      dialog.setAttribute("data-action", pending.action);
      dialog.showModal();
      if (pending.must) input.focus();
    });

    document.getElementById("action-cancel").addEventListener("click", function () {
      pending = null;
      dialog.close();
    });

    document.getElementById("action-confirm").addEventListener("click", function () {
      if (!pending) return;
      var p = pending;
      if (p.must && input.value.trim() !== p.must) {
        error.textContent = "Type " + p.must + " exactly to confirm; nothing was sent.";
        return;
      }
      pending = null;
      dialog.close();
      var body = new URLSearchParams();
      body.set("csrf", panel.getAttribute("data-csrf") || "");
      body.set("to_site", p.to);
      body.set("confirm", p.must ? input.value.trim() : "");
      result.textContent = "Sending " + p.action + "…";
      result.className = "";
      result.removeAttribute("data-status");
      fetch("/console/actions/" + encodeURIComponent(p.action), {
        method: "POST",
        body: body,
        credentials: "same-origin",
      })
        .then(function (r) {
          return r.text().then(function (t) {
            result.textContent = t;
            result.className = r.ok ? "ok" : "bad";
            result.setAttribute("data-status", String(r.status));
          });
        })
        .catch(function (e) {
          result.textContent = "The request failed: " + e;
          result.className = "bad";
          result.setAttribute("data-status", "0");
        });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
