// The pending count in the navigation and the page title ("(3) Approvals · Warden"), kept
// live: a tiny JSON read every 10 s (one indexed COUNT on the server), and at once when the
// queue's own live list is redrawn. On a phone, where the navigation is collapsed behind the
// Menu button, the button carries the same count. A static file: the CSP allows no inline
// script.
(function () {
  var badge = document.getElementById("nav-pending-count");
  if (!badge) return;
  var onMenu = document.getElementById("menu-pending-count");
  var PREFIX = /^\(\d+\) /;
  function show(count) {
    badge.dataset.count = String(count);
    badge.firstChild.nodeValue = String(count);
    badge.classList.toggle("nav-count-zero", count === 0);
    if (onMenu) {
      onMenu.textContent = String(count);
      onMenu.classList.toggle("nav-count-zero", count === 0);
    }
    var title = document.title.replace(PREFIX, "");
    document.title = count > 0 ? "(" + count + ") " + title : title;
  }
  function poll() {
    if (document.hidden) return;
    fetch(badge.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && typeof data.pending_count === "number") show(data.pending_count);
      })
      .catch(function () {});
  }
  show(Number(badge.dataset.count) || 0);
  setInterval(poll, 10000);
  document.addEventListener("visibilitychange", poll);
  document.addEventListener("htmx:afterSwap", function () {
    var inQueue = document.getElementById("pending-count");
    if (inQueue) show(Number(inQueue.dataset.count) || 0);
  });
})();
