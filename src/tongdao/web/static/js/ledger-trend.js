// Usage over time: stacked bars of domestic and cross-border bytes per day, drawn with the
// vendored Chart.js (window.Chart, loaded before this module) from the JSON the server
// embedded in <script type="application/json" id="trend-data">. The table below the chart
// carries the same numbers, so the page works without this script.

import { formatBytes } from "./network-usage.js";

function start() {
  const source = document.getElementById("trend-data");
  const holder = document.getElementById("trend-chart");
  if (!source || !holder || typeof window.Chart !== "function") return;
  const data = JSON.parse(source.textContent);
  const canvas = holder.querySelector("canvas");
  if (!canvas || data.labels.length === 0) return;
  holder.classList.add("drawn");
  holder.style.height = "280px";
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: data.names.domestic, data: data.domestic, backgroundColor: "#0f4c81" },
        { label: data.names.cross_border, data: data.cross_border, backgroundColor: "#e07b39" },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, ticks: { callback: (v) => formatBytes(v) } },
      },
      plugins: {
        tooltip: {
          callbacks: { label: (ctx) => `${ctx.dataset.label}: ${formatBytes(ctx.parsed.y)}` },
        },
      },
    },
  });
}

start();
