// The phone navigation: collapsed behind a Menu button. Loaded in <head> (a static file: the
// Content-Security-Policy allows no inline script) so the class below is set before the
// first paint; without JavaScript the navigation simply stays expanded.
(function () {
  document.documentElement.classList.add("js-nav");
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.querySelector(".menu-toggle");
    var header = document.querySelector(".topbar");
    if (!button || !header) return;
    function set(open) {
      header.classList.toggle("nav-open", open);
      button.setAttribute("aria-expanded", open ? "true" : "false");
    }
    button.addEventListener("click", function () {
      set(button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("nav-open")) {
        set(false);
        button.focus();
      }
    });
  });
})();
