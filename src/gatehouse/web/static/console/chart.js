// Line charts as SVG, drawn here from the samples the page collected (no library, no CDN).
// Presentation attributes and classes only: the CSP forbids inline style.

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

/**
 * Draw `series` ([{name, className, points: [{t, v}]}]) over the last `span` seconds.
 * Returns an <svg role="img"> whose label says what a sighted reader sees.
 */
export function lineChart({title, unit, series, span, width = 640}) {
  const height = width < 480 ? 180 : 200;
  const pad = {left: 44, right: 12, top: 12, bottom: 28};
  const now = Date.now() / 1000;
  const all = series.flatMap((s) => s.points);
  const max = niceMax(Math.max(0, ...all.map((p) => p.v)));
  const x = (t) => pad.left + ((t - (now - span)) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / max) * (height - pad.top - pad.bottom);
  const latest = series.map((s) => {
    const last = s.points[s.points.length - 1];
    return `${s.name} ${last ? last.v.toFixed(2) : "0"} ${unit}`;
  }).join(", ");
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `${title} over the last ${Math.round(span / 60)} minutes; now ${latest}; scale up to ${max} ${unit}.`,
  });
  for (const fraction of [0, 0.5, 1]) {
    const v = max * fraction;
    svg.append(el("line", {x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid"}));
    svg.append(el("text", {x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis"}, String(+v.toFixed(2))));
  }
  svg.append(el("text", {x: pad.left, y: height - 8, class: "axis"}, `${Math.round(span / 60)} min ago`));
  svg.append(el("text", {x: width - pad.right, y: height - 8, "text-anchor": "end", class: "axis"}, "now"));
  for (const s of series) {
    const points = s.points.filter((p) => p.t >= now - span).map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    if (points.length > 1) svg.append(el("polyline", {points: points.join(" "), class: `line ${s.className}`, fill: "none"}));
    else if (points.length === 1) {
      const [cx, cy] = points[0].split(",");
      svg.append(el("circle", {cx, cy, r: 3, class: `dot ${s.className}`}));
    }
  }
  return svg;
}
