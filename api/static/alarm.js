// An alarm's evidence as an SVG line chart per series, and its audit trail.
"use strict";
(() => {
  const { id, t, lang } = JSON.parse(document.getElementById("alarm-data").textContent);
  const chart = document.getElementById("chart");
  const svgNS = "http://www.w3.org/2000/svg";
  const el = (name, attrs, text) => {
    const node = document.createElementNS(svgNS, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  };

  function plot(series, start, end) {
    const width = 760, height = 160, left = 48, pad = 16;
    const t0 = Date.parse(start), t1 = Date.parse(end);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height + 24}`, class: "plot", role: "img" });
    const values = series.values;
    const lo = Math.min(...values), hi = Math.max(...values);
    const span = hi - lo || 1;
    const x = (ts) => left + (width - left - pad) * (Date.parse(ts) - t0) / Math.max(1, t1 - t0);
    const y = (v) => pad + (height - 2 * pad) * (1 - (v - lo) / span);
    svg.append(el("line", { x1: left, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis" }));
    svg.append(el("text", { x: 2, y: pad + 4, class: "tick" }, hi.toFixed(1)));
    svg.append(el("text", { x: 2, y: height - pad, class: "tick" }, lo.toFixed(1)));
    const points = series.ts.map((ts, i) => `${x(ts).toFixed(1)},${y(values[i]).toFixed(1)}`).join(" ");
    svg.append(el("polyline", { points, class: "trace" }));
    svg.append(el("text", { x: left, y: height + 18, class: "label" }, `${series.device_id} · ${series.metric}`));
    return svg;
  }

  async function evidence() {
    const response = await fetch(`/api/v1/alarms/${id}/evidence`, { credentials: "same-origin" });
    if (!response.ok) { chart.textContent = response.statusText; return; }
    const data = await response.json();
    const drawn = data.series.filter((s) => s.values.length > 1);
    chart.replaceChildren(...drawn.map((s) => plot(s, data.window_start, data.window_end)));
    if (!drawn.length) chart.textContent = t.no_data;
    chart.dataset.series = String(drawn.length);
  }

  async function audit() {
    const response = await fetch(`/api/v1/alarms/${id}/events`, { credentials: "same-origin" });
    if (!response.ok) return;
    const items = (await response.json()).map((e) => {
      const li = document.createElement("li");
      const at = new Date(e.at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
      li.textContent = `${at} · ${e.action} · ${e.actor} (${e.channel})${e.note ? " · " + e.note : ""}`;
      return li;
    });
    document.getElementById("audit").replaceChildren(...items);
  }

  document.querySelectorAll("time[data-iso]").forEach((node) => {
    node.textContent = new Date(node.dataset.iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
  });
  evidence();
  audit();
})();
