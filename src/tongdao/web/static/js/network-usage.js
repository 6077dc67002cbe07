// Usage page: bar charts of bytes up/down per person and per site, drawn with the vendored
// Chart.js (window.Chart, loaded before this module) from the JSON the server embedded in
// <script type="application/json" id="usage-data">. The tables below the charts carry the
// same numbers, so the page works without this script.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(value) {
  let size = Number(value);
  let unit = 0;
  while (size >= 1024 && unit < UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${UNITS[unit]}`;
}

function draw(holder, series, labels) {
  const canvas = holder.querySelector("canvas");
  if (!canvas || !series || series.labels.length === 0) return null;
  holder.classList.add("drawn");
  holder.style.height = `${Math.max(160, 48 + series.labels.length * 44)}px`;
  return new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: series.labels,
      datasets: [
        { label: labels.up, data: series.up, backgroundColor: "#0f4c81" },
        { label: labels.down, data: series.down, backgroundColor: "#5fa8d3" },
      ],
    },
    options: {
      indexAxis: "y",
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: { x: { beginAtZero: true, ticks: { callback: (v) => formatBytes(v) } } },
      plugins: {
        tooltip: {
          callbacks: { label: (ctx) => `${ctx.dataset.label}: ${formatBytes(ctx.parsed.x)}` },
        },
      },
    },
  });
}

function start() {
  const source = document.getElementById("usage-data");
  if (!source || typeof window.Chart !== "function") return;
  const data = JSON.parse(source.textContent);
  for (const holder of document.querySelectorAll(".chart[data-series]")) {
    draw(holder, data[holder.dataset.series], data.labels);
  }
}

start();
