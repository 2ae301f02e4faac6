// Charts for the flag detail and analytics pages (Chart.js, vendored). Data comes from the page.
(function () {
  "use strict";
  var ON = "#1a7f37", OFF = "#8c959f", PALETTE = ["#0a58ca", "#bf3989", "#9a6700", "#1a7f37", "#8250df", "#cf222e", "#0969da"];
  function label(iso, daily) {
    var d = new Date(iso);
    return daily ? d.toISOString().slice(5, 10) : d.toISOString().slice(11, 16);
  }
  function bars(canvas, points, daily) {
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: points.map(function (p) { return label(p.time, daily); }),
        datasets: [
          { label: "On", data: points.map(function (p) { return p.enabled; }), backgroundColor: ON, stack: "s" },
          { label: "Off", data: points.map(function (p) { return p.disabled; }), backgroundColor: OFF, stack: "s" }
        ]
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }
  function doughnut(canvas, labels, values, colors) {
    return new Chart(canvas, {
      type: "doughnut",
      data: { labels: labels, datasets: [{ data: values, backgroundColor: colors }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false }
    });
  }
  window.flagsiteCharts = {};
  var seriesNode = document.getElementById("series-data");
  if (seriesNode) {
    var series = JSON.parse(seriesNode.textContent);
    var daily = series.granularity === "day";
    window.flagsiteCharts.evaluations = bars(document.getElementById("chart-evaluations"), series.series, daily);
    window.flagsiteCharts.ratio = doughnut(document.getElementById("chart-ratio"), ["On", "Off"],
      [series.totals.enabled, series.totals.disabled], [ON, OFF]);
    var variantsCanvas = document.getElementById("chart-variants");  // multivariate flags only
    if (variantsCanvas) {
      var variants = Object.keys(series.totals.variants);
      window.flagsiteCharts.variants = doughnut(variantsCanvas, variants,
        variants.map(function (k) { return series.totals.variants[k]; }), PALETTE.slice(0, variants.length));
    }
  }
  var allNode = document.getElementById("all-series");
  if (allNode) {
    window.flagsiteCharts.all = bars(document.getElementById("chart-all"), JSON.parse(allNode.textContent), false);
  }
})();
