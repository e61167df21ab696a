// Keyboard shortcuts on an approval's page: a approve, r reject, j next / k previous
// pending request. They press the page's own buttons and links (so nothing happens when
// they are absent: a decided request, a viewer), and never fire while typing.
// A static file, not an inline <script>: the Content-Security-Policy allows no inline script.
(function () {
  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return el.isContentEditable || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }
  var targets = {
    a: "#decide button[value=approve]",
    r: "#decide button[value=reject]",
    j: "#next-pending",
    k: "#prev-pending",
  };
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target) || typing(document.activeElement)) return;
    var selector = targets[event.key];
    if (!selector) return;
    var target = document.querySelector(selector);
    if (!target) return;
    event.preventDefault();
    target.click();
  });
})();
