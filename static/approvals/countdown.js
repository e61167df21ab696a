// Time left on pending approvals, ticking every second and after each htmx swap.
// A static file, not an inline <script>: the Content-Security-Policy allows no inline script.
(function () {
  function fmt(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
  }
  function tick() {
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var s = Math.floor((new Date(el.dataset.expires) - Date.now()) / 1000);
      el.textContent = s > 0 ? fmt(s) : "no time";
    });
  }
  tick();
  setInterval(tick, 1000);
  document.addEventListener("htmx:afterSwap", tick);
})();
