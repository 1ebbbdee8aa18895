// izinli dashboard: small progressive enhancements (no inline scripts: CSP is 'self' only).
(function () {
  "use strict";
  // Passphrase strength meter: length and character variety, 0..4.
  function strength(text) {
    var score = 0;
    if (text.length >= 12) score++;
    if (text.length >= 20) score++;
    var kinds = [/[a-zçğıöşü]/, /[A-ZÇĞİÖŞÜ]/, /[0-9]/, /[^A-Za-z0-9çğıöşüÇĞİÖŞÜ]/]
      .filter(function (re) { return re.test(text); }).length;
    if (kinds >= 2) score++;
    if (kinds >= 3 || text.split(/\s+/).length >= 4) score++;
    return Math.min(score, 4);
  }
  document.addEventListener("input", function (event) {
    var target = event.target;
    var meterId = target && target.getAttribute && target.getAttribute("data-strength");
    if (meterId) {
      var meter = document.getElementById(meterId);
      if (meter) meter.value = strength(target.value);
    }
  });
  // A code's text from the element's data-labels catalogue (never the raw code).
  function shown(element, code) {
    try {
      var labels = JSON.parse(element.getAttribute("data-labels") || "{}");
      if (labels[code]) return labels[code];
    } catch (e) { /* fall through */ }
    var words = String(code).replace(/[_\-.]+/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }
  // Live campaign progress over server-sent events: <div data-progress-src="/campaigns/ID/events">
  function watch(element) {
    var source = new EventSource(element.getAttribute("data-progress-src"));
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      var bar = element.querySelector("[data-bar]");
      var label = element.querySelector("[data-label]");
      var state = element.querySelector("[data-state]");
      if (bar) { bar.style.width = data.percent + "%"; }
      if (label) { label.textContent = data.percent + "% (" + data.done + "/" + data.total + ")"; }
      if (state) { state.textContent = data.state_label || shown(state, data.state); }
      var meter = element.querySelector("progress");
      if (meter) { meter.value = data.percent; }
      if (data.final) { source.close(); }
    });
    source.onerror = function () { /* the browser retries by itself */ };
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-progress-src]").forEach(watch);
  });
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
