// Refreshes the live parts of the status page every data-refresh seconds while the tab is
// visible, without losing the filter form or the focus. Optional: without JavaScript the page
// reloads itself through a <noscript> meta refresh.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-refresh") || 0);
  if (!seconds || !window.fetch || !window.DOMParser) return;
  var period = seconds * 1000;
  var timer = null;
  var last = Date.now();
  var busy = false;

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live][id]").forEach(function (el) {
      var next = fresh.getElementById(el.id);
      // A reader tabbing through a table keeps their place: that part waits a round.
      if (next && !el.contains(document.activeElement)) {
        el.replaceWith(document.importNode(next, true));
      }
    });
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.redirected) {
          window.location.reload(); // signed out or token revoked: show the sign-in form
          return null;
        }
        return resp.ok ? resp.text() : null;
      })
      .then(function (html) {
        if (html) {
          swap(html);
          last = Date.now();
        }
      })
      .catch(function () {}) // offline or restarting: the next round tries again
      .then(function () {
        busy = false;
      });
  }

  function start() {
    window.clearInterval(timer);
    timer = window.setInterval(refresh, period);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      window.clearInterval(timer);
      timer = null;
      return;
    }
    if (Date.now() - last >= period) refresh();
    start();
  });
  start();
})();
