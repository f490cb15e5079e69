// The reviewer pages' script (no inline script is allowed by the Content-Security-Policy).
// Charts are drawn from the tables beside them, so a chart shows exactly the numbers of its table.
(function () {
  "use strict";

  var COLORS = {
    approved: "#1c7c3a", rejected: "#b3261e", withdrawn: "#8a8f99", pending: "#c98a00",
    p50: "#2450b2", p90: "#7b4bc4", deadline: "#b3261e",
    within: "#2450b2", overdue: "#b3261e",
    researchers: "#2450b2", files: "#1c7c3a", bytes: "#c98a00", anonymous: "#8a8f99", active: "#1c7c3a"
  };

  function cellValue(cell) {
    var raw = cell.getAttribute("data-value");
    if (raw === null || raw === "") { return null; }
    return Number(raw);
  }

  function chartFromTable(table) {
    if (!window.Chart) { return; }
    var box = document.getElementById(table.getAttribute("data-chart-target"));
    if (!box) { return; }
    var kind = table.getAttribute("data-chart");
    var stacked = table.hasAttribute("data-stacked");
    var horizontal = table.hasAttribute("data-horizontal");
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var rows = Array.prototype.slice.call(table.tBodies[0].rows).filter(function (r) { return !r.hasAttribute("data-empty"); });
    var labels = rows.map(function (r) { return r.cells[0].textContent.trim(); });
    var axes = {};
    var fractional = {};  // axes of measures (days, GB); every other value axis counts, in whole numbers
    var datasets = [];
    heads.forEach(function (th, i) {
      var key = th.getAttribute("data-series");
      if (!key) { return; }
      var type = th.getAttribute("data-type") || kind;
      var axis = th.getAttribute("data-axis") || "y";
      axes[axis] = th.getAttribute("data-axis-title") || axes[axis] || "";
      if (th.hasAttribute("data-fractional")) { fractional[axis] = true; }
      datasets.push({
        label: th.textContent.trim(),
        type: type,
        data: rows.map(function (r) { return cellValue(r.cells[i]); }),
        backgroundColor: COLORS[key] || "#2450b2",
        borderColor: COLORS[key] || "#2450b2",
        borderWidth: type === "line" ? 2 : 0,
        // A deadline belongs to each bar group on its own (its release's): a mark across the group, no line
        // joining different releases.
        showLine: key !== "deadline",
        pointStyle: key === "deadline" ? "line" : "circle",
        pointRadius: key === "deadline" ? 24 : (type === "line" && rows.length > 40 ? 0 : 2),
        pointHoverRadius: key === "deadline" ? 24 : 4,
        pointBorderWidth: key === "deadline" ? 3 : 1,
        fill: false,
        stack: stacked ? "all" : undefined,
        yAxisID: horizontal ? undefined : axis,
        xAxisID: horizontal ? axis.replace("y", "x") : undefined,
        spanGaps: true
      });
    });
    var scales = {};
    var valueAxis = horizontal ? "x" : "y";
    Object.keys(axes).forEach(function (axis) {
      var id = horizontal ? axis.replace("y", "x") : axis;
      scales[id] = {
        beginAtZero: true, stacked: stacked, grace: "8%",
        position: axis === "y1" ? "right" : (horizontal ? "bottom" : "left"),
        grid: { drawOnChartArea: axis !== "y1" },
        title: { display: !!axes[axis], text: axes[axis] },
        ticks: fractional[axis] ? {} : { precision: 0 }
      };
    });
    // Category labels (dates, months, releases) never overlap: skipped with room between them, never rotated.
    scales[horizontal ? "y" : "x"] = {
      stacked: stacked,
      ticks: { autoSkip: true, autoSkipPadding: 16, maxRotation: 0, minRotation: 0 }
    };
    if (!scales[valueAxis]) { scales[valueAxis] = { beginAtZero: true, stacked: stacked, ticks: { precision: 0 } }; }
    var canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", table.getAttribute("data-chart-label") || "");
    box.appendChild(canvas);
    new window.Chart(canvas, {
      type: kind,
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom" } },
        scales: scales
      }
    });
    box.setAttribute("data-drawn", "true");
  }

  document.querySelectorAll("table[data-chart]").forEach(chartFromTable);

  // The dashboard's period: custom dates only when "Dates" is chosen.
  var period = document.getElementById("period");
  if (period) {
    var dates = document.getElementById("custom-dates");
    var sync = function () {
      var custom = period.value === "custom";
      dates.hidden = !custom;
      dates.querySelectorAll("input").forEach(function (i) { i.disabled = !custom; });
    };
    period.addEventListener("change", sync);
    sync();
  }

  // Queue: "select all" selects every request on the page.
  var all = document.getElementById("select-all");
  if (all) {
    var boxes = document.querySelectorAll("#bulk-form input[name=ids]");
    var update = function () {
      var checked = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).length;
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    };
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
    });
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }

  // Decision forms: a saved reason fills the text box, which stays editable.
  document.querySelectorAll("select[data-fills]").forEach(function (select) {
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      var box = document.getElementById(select.getAttribute("data-fills"));
      if (box && option && option.getAttribute("data-text")) {
        box.value = option.getAttribute("data-text");
        box.focus();
      }
    });
  });
})();
