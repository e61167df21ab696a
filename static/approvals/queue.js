// The queue's selection: "select all", the selected count, and no live refresh while a
// reviewer is selecting (a refresh would redraw the list under them). Decided requests
// that stay selected are reported as "already decided" when the form is sent.
// A static file, not an inline <script>: the Content-Security-Policy allows no inline script.
(function () {
  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll("#queue .queue-select"));
  }
  function selected() {
    return boxes().filter(function (box) { return box.checked; }).length;
  }
  function update() {
    var count = selected();
    var counter = document.getElementById("selected-count");
    if (counter) counter.textContent = String(count);
    var paused = document.getElementById("bulk-paused");
    if (paused) paused.hidden = count === 0;
    var all = document.getElementById("select-all");
    if (all) {
      var total = boxes().length;
      all.checked = total > 0 && count === total;
      all.indeterminate = count > 0 && count < total;
    }
  }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.id === "select-all") {
      boxes().forEach(function (box) { box.checked = target.checked; });
    }
    if (target.id === "select-all" || target.classList.contains("queue-select")) update();
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var queue = document.getElementById("queue");
    if (event.detail.elt !== queue) return;
    if (selected() > 0 || queue.contains(document.activeElement)) event.preventDefault();
  });
  document.addEventListener("htmx:afterSwap", update);
  document.addEventListener("DOMContentLoaded", update);
})();
