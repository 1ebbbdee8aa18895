// izinli campaign pages (no inline scripts: CSP is 'self' only).
// 1. Live campaign page: <div data-live-src="/campaigns/ID/events"> listens to server-sent
//    events: `campaign` carries the live part rendered anew (state, counts, reasons, actions),
//    `progress` the bar; the stream ends on the final state, the page showing the final truth.
// 2. Confirmation: a form with data-confirm="question" (or, on the new-campaign form, with
//    data-confirm-when="start_now" while that box is ticked) asks in <dialog id=confirm-dialog>
//    before it is sent, the dry run's summary first (data-confirm-summary); its hidden
//    "confirmed" field then says yes.
(function () {
  "use strict";
  function live(element) {
    var source = new EventSource(element.getAttribute("data-live-src"));
    source.addEventListener("campaign", function (event) {
      var data = JSON.parse(event.data);
      if (typeof data.html === "string") {
        element.innerHTML = data.html;  // rendered and escaped by the server's templates
        if (window.htmx) { window.htmx.process(element); }  // e.g. a draft's dry run loads
      }
    });
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      var label = element.querySelector("[data-label]");
      var meter = element.querySelector("progress");
      if (label) { label.textContent = data.percent + "% (" + data.done + "/" + data.total + ")"; }
      if (meter) { meter.value = data.percent; }
      if (data.final) {
        source.close();
        element.setAttribute("data-final", "true");
      }
    });
    source.onerror = function () { /* the browser retries by itself */ };
  }

  function question(form) {
    var when = form.getAttribute("data-confirm-when");
    var ask = form.getAttribute("data-confirm");
    if (when) {
      var box = form.elements[when];
      if (!box || !box.checked) { return null; }
    } else if (!ask) {
      return null;
    }
    // The dry run's "N kişiye gidecek; M atlanacak (…)" goes first, when the page shows it.
    if (when || form.hasAttribute("data-confirm-summary")) {
      var summary = (when ? form : document).querySelector("[data-dry-run-summary]");
      if (summary) { return summary.textContent.replace(/\s+/g, " ").trim() + " " + (ask || ""); }
    }
    return ask;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.tagName !== "FORM" || form.getAttribute("data-confirming") === "yes") {
      return;
    }
    var text = question(form);
    var dialog = document.getElementById("confirm-dialog");
    if (!text || !dialog || typeof dialog.showModal !== "function") { return; }
    event.preventDefault();
    dialog.querySelector("[data-confirm-text]").textContent = text;
    dialog.returnValue = "";
    dialog.onclose = function () {
      if (dialog.returnValue !== "yes") { return; }
      var confirmed = form.elements.confirmed;
      if (confirmed) { confirmed.value = "yes"; }
      form.setAttribute("data-confirming", "yes");
      form.submit();
    };
    dialog.showModal();
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-src]").forEach(live);
  });
})();
