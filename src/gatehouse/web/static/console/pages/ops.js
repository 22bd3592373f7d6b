// Operations: health and readiness, the SLO targets against live figures, requests and
// errors over time (sampled from /metrics while the page is open), recent client errors.

import { call, text } from "../api.js";
import { lineChart } from "../chart.js";
import { h, describeError, messages, replace, table, time } from "../dom.js";
import { counters, objectives, parseMetrics } from "../metrics.js";

const SAMPLE_EVERY = 3000; // ms
const SPAN = 180; // seconds of history in the charts

function verdict(ok) {
  if (ok === null) return h("span", {class: "badge"}, "No data");
  return ok ? h("span", {class: "badge ok"}, "Met") : h("span", {class: "badge bad"}, "Missed");
}

export function render(main) {
  const msg = messages();
  const health = h("div", {class: "cards"});
  const slo = h("div", {});
  const charts = h("div", {class: "charts"});
  const errors = h("div", {});
  const refreshErrors = h("button", {type: "button", class: "secondary small"}, "Refresh");
  replace(main,
    h("div", {class: "page-head"}, h("h1", {}, "Operations"),
      h("p", {class: "lead"}, "Live from this server; updated every few seconds while this page is open.")),
    msg.el,
    h("section", {"aria-labelledby": "health-h"}, h("h2", {id: "health-h"}, "Health"), health),
    h("section", {"aria-labelledby": "slo-h"}, h("h2", {id: "slo-h"}, "Service-level objectives"),
      h("p", {class: "hint"}, "Targets from the design; figures since this server process started."), slo),
    h("section", {"aria-labelledby": "traffic-h"}, h("h2", {id: "traffic-h"}, "Traffic"),
      h("p", {class: "hint"}, "Sampled from /metrics every 3 seconds since you opened this page (this page's own requests included)."),
      charts),
    h("section", {"aria-labelledby": "client-errors-h"},
      h("div", {class: "section-head"}, h("h2", {id: "client-errors-h"}, "Recent client errors"), refreshErrors),
      errors));

  const seen = []; // [{t, requests, clientErrors, serverErrors}]
  let stopped = false;

  async function probe(path) {
    // Unauthenticated probes, read as monitoring does (a 503 from /readyz carries its checks).
    try {
      const response = await fetch(path, {credentials: "omit", cache: "no-store"});
      return {status: response.status, body: await response.json()};
    } catch {
      return {status: 0, body: null};
    }
  }

  async function drawHealth() {
    const [live, ready] = await Promise.all([probe("/healthz"), probe("/readyz")]);
    const card = (title, ok, detail) => h("div", {class: `card status-card ${ok ? "good" : "poor"}`},
      h("h3", {}, title), h("p", {class: "big"}, ok ? "OK" : "Failing"), h("p", {class: "hint"}, detail));
    const checks = (ready.body && ready.body.checks) || {};
    replace(health,
      card("Serving (/healthz)", live.status === 200, live.status ? `HTTP ${live.status}` : "unreachable"),
      card("Ready (/readyz)", ready.status === 200, ready.status ? `HTTP ${ready.status}` : "unreachable"),
      Object.entries(checks).map(([name, c]) => card(name[0].toUpperCase() + name.slice(1), c.ok, c.detail || "")));
  }

  function drawSlo(samples) {
    const rows = objectives(samples).map((o) => h("tr", {},
      h("th", {scope: "row"}, o.name), h("td", {class: "nowrap"}, o.target),
      h("td", {class: "nowrap"}, h("span", {class: "strong"}, o.value)),
      h("td", {}, verdict(o.ok)), h("td", {class: "muted"}, o.basis)));
    replace(slo, table("Service-level objectives", ["Objective", "Target", "Now", "Status", "Based on"], rows));
  }

  function rates(key) {
    const points = [];
    for (let i = 1; i < seen.length; i += 1) {
      const dt = seen[i].t - seen[i - 1].t;
      if (dt > 0) points.push({t: seen[i].t, v: Math.max(0, (seen[i][key] - seen[i - 1][key]) / dt)});
    }
    return points;
  }

  function drawCharts() {
    // Draw at the size shown, so axis labels stay readable on a phone.
    const figure = charts.querySelector("figure");
    const width = figure ? Math.max(280, Math.min(900, figure.clientWidth - 34)) : 640;
    const legend = (items) => h("ul", {class: "legend"}, items.map(([cls, label]) => h("li", {class: cls}, label)));
    replace(charts,
      h("figure", {class: "card"},
        h("figcaption", {}, "Requests per second"),
        lineChart({title: "Requests per second", unit: "req/s", span: SPAN, width,
          series: [{name: "requests", className: "s-requests", points: rates("requests")}]}),
        legend([["s-requests", "All requests"]])),
      h("figure", {class: "card"},
        h("figcaption", {}, "Errors per second"),
        lineChart({title: "Errors per second", unit: "per s", span: SPAN, width, series: [
          {name: "4xx", className: "s-4xx", points: rates("clientErrors")},
          {name: "5xx", className: "s-5xx", points: rates("serverErrors")}]}),
        legend([["s-4xx", "4xx (refused requests)"], ["s-5xx", "5xx (server errors)"]])));
  }

  async function sample() {
    try {
      const samples = parseMetrics(await text("/metrics"));
      seen.push({t: Date.now() / 1000, ...counters(samples)});
      while (seen.length && seen[0].t < Date.now() / 1000 - SPAN - SAMPLE_EVERY / 1000) seen.shift();
      drawSlo(samples);
      drawCharts();
      msg.clear();
    } catch (error) {
      msg.error(`Metrics are unavailable: ${describeError(error)}`);
    }
  }

  async function drawClientErrors() {
    try {
      const page = await call("GET", "/api/v1/ops/client-errors");
      const rows = page.items.map((e) => h("tr", {},
        h("td", {}, time(e.at)),
        h("td", {class: "wrap"}, e.message),
        h("td", {class: "wrap"}, e.url || "—"),
        h("td", {}, e.request_id ? h("code", {}, e.request_id) : "—")));
      replace(errors, rows.length
        ? table("Recent client errors", ["Time", "Message", "Page", "Request"], rows)
        : h("p", {class: "empty"}, "No browser errors reported since this server process started."));
    } catch (error) {
      replace(errors, h("p", {class: "empty"}, `Client errors are unavailable: ${describeError(error)}`));
    }
  }

  refreshErrors.addEventListener("click", drawClientErrors);
  drawCharts();
  drawCharts(); // again, now that the first drawing shows the size available
  drawHealth();
  sample();
  drawClientErrors();
  const timer = setInterval(() => {
    if (stopped || document.hidden) return;
    sample();
    drawHealth();
  }, SAMPLE_EVERY);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
