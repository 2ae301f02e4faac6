// The experiment results page: per metric, each treatment's relative uplift with its always-valid
// interval (floating bars; Chart.js, vendored) and the users first exposed per day. Data: the page.
(function () {
  "use strict";
  var PALETTE = ["#8c959f", "#0a58ca", "#bf3989", "#9a6700", "#8250df", "#1a7f37", "#0969da"];
  var data = JSON.parse(document.getElementById("experiment-charts").textContent);
  var percent = function (v) { return (v * 100).toFixed(1) + "%"; };
  window.experimentCharts = {};
  data.metrics.forEach(function (metric) {
    var canvas = document.getElementById("uplift-" + metric.key);
    var rows = metric.variants.filter(function (v) { return v.interval && v.interval[0] !== null; });
    if (!canvas || !rows.length) { if (canvas) { canvas.parentNode.hidden = true; } return; }
    window.experimentCharts[metric.key] = new Chart(canvas, {
      data: {
        labels: rows.map(function (v) { return v.variant; }),
        datasets: [
          { type: "bar", label: "Always-valid 95% interval", data: rows.map(function (v) { return v.interval; }),
            backgroundColor: rows.map(function (v) {
              return v.interval[0] > 0 ? "#1a7f37" : (v.interval[1] < 0 ? "#cf222e" : "#8c959f"); }),
            barThickness: 14, order: 2 },
          { type: "line", label: "Uplift", showLine: false, order: 1,
            data: rows.map(function (v) { return { x: v.uplift, y: v.variant }; }),
            pointStyle: "rectRot", pointRadius: 7, backgroundColor: "#1f2328", borderColor: "#ffffff" }
        ]
      },
      options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { ticks: { callback: percent }, title: { display: true, text: "relative uplift vs control" } } },
        plugins: { tooltip: { callbacks: { label: function (ctx) {
          var raw = ctx.raw;
          return ctx.dataset.label + ": " + (Array.isArray(raw) ? percent(raw[0]) + " to " + percent(raw[1]) : percent(raw));
        } } } } }
    });
  });
  var canvas = document.getElementById("chart-exposures");
  var days = [], variants = [];
  data.exposures.forEach(function (p) {
    if (days.indexOf(p.date) < 0) { days.push(p.date); }
    if (variants.indexOf(p.variant) < 0) { variants.push(p.variant); }
  });
  window.experimentCharts.exposures = new Chart(canvas, {
    type: "bar",
    data: { labels: days, datasets: variants.map(function (variant, i) {
      return { label: variant, backgroundColor: PALETTE[i % PALETTE.length], data: days.map(function (day) {
        var hit = data.exposures.filter(function (p) { return p.date === day && p.variant === variant; })[0];
        return hit ? hit.users : 0;
      }) };
    }) },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "users first exposed" } } } }
  });
})();
