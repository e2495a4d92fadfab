// Charts of the HR page: each <canvas data-source="ID"> is drawn from the JSON in
// <script type="application/json" id="ID"> ({"labels": [...], "series": [{"label", "values"}]},
// values in [0, 1], drawn as percentages). No inline script: the page's CSP forbids them.
"use strict";

(function () {
  const colours = ["#0b57a4", "#a4161a", "#1e6b34"];

  function draw(canvas) {
    const source = document.getElementById(canvas.dataset.source);
    if (!source || typeof Chart === "undefined") {
      return;
    }
    const data = JSON.parse(source.textContent);
    new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: data.series.map(function (series, i) {
          return {
            label: series.label,
            data: series.values.map(function (v) { return v === null ? null : Math.round(v * 1000) / 10; }),
            borderColor: colours[i % colours.length],
            backgroundColor: colours[i % colours.length],
            tension: 0.2,
          };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        locale: "fr-FR",
        scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } },
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("canvas[data-source]").forEach(draw);
  });
})();
