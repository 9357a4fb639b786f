// A line chart drawn as inline SVG: series of [time (ms), value] over a fixed window ending now.

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function label(v, unit) {
  const t = v >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(2)}`;
  return unit ? t + unit : t;
}

// series: [{name, points: [[t, v], ...], dashed}]; returns an <svg> (colours come from the CSS
// classes series-0, series-1, ...)
export function lineChart(series, { windowMs = 10 * 60 * 1000, now = Date.now(), unit = "",
                                    width = 640, height = 180, title = "" } = {}) {
  const pad = { left: 48, right: 12, top: 10, bottom: 22 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  const start = now - windowMs;
  let max = 0;
  for (const one of series) for (const [t, v] of one.points) if (t >= start) max = Math.max(max, v);
  max = niceMax(max);
  const x = (t) => pad.left + ((t - start) / windowMs) * w;
  const y = (v) => pad.top + hgt - (v / max) * hgt;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                         "aria-label": title });
  if (title) svg.append(s("title", {}, title));
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: pad.left, x2: pad.left + w, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: pad.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" },
                 label(v, unit)));
  }
  const minutes = Math.round(windowMs / 60000);
  const step = minutes > 5 ? 2 : 1;
  for (let m = 0; m <= minutes; m += step) {
    const t = now - m * 60000;
    svg.append(s("text", { x: x(t), y: height - 6, class: "axis",
                           "text-anchor": m === 0 ? "end" : "middle" },
                 m === 0 ? "now" : `-${m}m`));
  }
  series.forEach((one, i) => {
    const pts = one.points.filter(([t]) => t >= start);
    if (!pts.length) return;
    const d = pts.map(([t, v], k) => `${k ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    const cls = `line series-${i}${one.dashed ? " dashed" : ""}`;
    svg.append(s("path", { d: d.join(""), class: cls },
                 s("title", {}, one.name)));
    const [lt, lv] = pts[pts.length - 1];  // the newest value, visible even as a single point
    svg.append(s("circle", { cx: x(lt).toFixed(1), cy: y(lv).toFixed(1), r: 3,
                             class: `dot series-${i}` }));
  });
  return svg;
}
