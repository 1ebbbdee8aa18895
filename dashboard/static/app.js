// izinli dashboard: small progressive enhancements (no inline scripts: CSP is 'self' only).
(function () {
  "use strict";
  // "1 saat 5 dakika" / "1 hour 5 minutes", as dashboard/labels.py's duration().
  function duration(seconds) {
    var english = document.documentElement.lang === "en";
    if (seconds < 60) return english ? "less than a minute" : "1 dakikadan az";
    var minutes = Math.floor(seconds / 60), hours = Math.floor(minutes / 60);
    var days = Math.floor(hours / 24), parts = [];
    hours %= 24; minutes %= 60;
    if (days) parts.push(days + (english ? (days === 1 ? " day" : " days") : " gün"));
    if (hours) parts.push(hours + (english ? (hours === 1 ? " hour" : " hours") : " saat"));
    if (minutes) parts.push(minutes + (english ? (minutes === 1 ? " minute" : " minutes") : " dakika"));
    return parts.join(" ");
  }
  // Countdown for the vault: <span data-countdown="SECONDS">
  setInterval(function () {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.max(0, parseInt(el.getAttribute("data-countdown"), 10) - 1);
      el.setAttribute("data-countdown", String(left));
      el.textContent = duration(left);
    });
  }, 1000);
})();
// Upload progress for htmx multipart forms: <progress data-upload-progress hidden> in the form.
(function () {
  "use strict";
  function bar(event) {
    var form = event.target && event.target.closest ? event.target.closest("form") : null;
    return form ? form.querySelector("progress[data-upload-progress]") : null;
  }
  document.addEventListener("htmx:xhr:progress", function (event) {
    var meter = bar(event);
    if (meter && event.detail && event.detail.lengthComputable && event.detail.total) {
      meter.hidden = false;
      meter.value = Math.round(100 * event.detail.loaded / event.detail.total);
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var meter = bar(event);
    if (meter) { meter.hidden = false; meter.removeAttribute("value"); }
  });
})();
