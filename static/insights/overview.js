/* The overview's charts (Chart.js, static/vendor/chartjs). The figures come from the
   json_script element #overview-data of the panel, which htmx replaces every 15 s. */
(function () {
  "use strict";
  var DECISIONS = [
    ["allow", "Allowed", "#147a3d"],
    ["block", "Blocked", "#b42318"],
    ["requires_approval", "Held for approval", "#c77700"],
  ];
  var MODEL_COLORS = ["#2f5bea", "#7a4fd6", "#0f8b8d", "#c2410c", "#64748b", "#be185d", "#4d7c0f"];
  var charts = {};

  function options(money) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: money ? { callbacks: { label: function (c) { return c.dataset.label + ": $" + c.parsed.y.toFixed(4); } } } : {},
      },
      scales: {
        x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
        y: { stacked: true, beginAtZero: true, ticks: money ? { callback: function (v) { return "$" + v; } } : { precision: 0 } },
      },
    };
  }

  // Canvases are found by data-chart, not by id: htmx copies an old element's attributes
  // (Chart.js's inline size) onto a new one with the same id, which the CSP refuses.
  function draw(id, config) {
    var canvas = document.querySelector('canvas[data-chart="' + id + '"]');
    if (charts[id]) {
      charts[id].destroy();
      delete charts[id];
    }
    if (canvas) {
      charts[id] = new window.Chart(canvas, config);
    }
  }

  function render() {
    var source = document.getElementById("overview-data");
    if (!source || !window.Chart) {
      return;
    }
    var data = JSON.parse(source.textContent);
    draw("checks", {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: DECISIONS.map(function (d) {
          return { label: d[1], data: data.series[d[0]], backgroundColor: d[2] };
        }),
      },
      options: options(false),
    });
    draw("tokens", {
      type: "bar",
      data: {
        labels: data.tokens.days,
        datasets: data.tokens.models.map(function (m, i) {
          return {
            label: m.priced ? m.model : m.model + " (no price)",
            data: m.per_day,
            backgroundColor: MODEL_COLORS[i % MODEL_COLORS.length],
          };
        }),
      },
      options: options(true),
    });
  }

  document.addEventListener("DOMContentLoaded", render);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "overview-panel") {
      render();
    }
  });
})();
