// Headroom console: the services with their KPIs and SLO state, a page per service (rate,
// errors, latency percentiles, the forecast band, the recommended replicas and why), the
// dependency graph, the anomalies with their ranked causes, and a SQL box. It reads the same HTTP API as everyone else; charts are
// uPlot (vendored, no CDN). No build step: this file is served as written.
"use strict";

const main = document.getElementById("main");
const statusLine = document.getElementById("status");

async function api(path, options) {
  const resp = await fetch(path, options);
  const text = await resp.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = { error: text }; }
  if (!resp.ok) {
    const err = new Error(body.error || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function sql(query) {
  return api("/api/v1/sql", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: query }),
  });
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmt(v, digits = 2) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Math.abs(v) >= 1000) return v.toLocaleString("en", { maximumFractionDigits: 0 });
  return v.toLocaleString("en", { maximumFractionDigits: digits });
}

const pct = (v, digits = 2) => (v === null || v === undefined ? "–" : fmt(100 * v, digits) + " %");
const secs = (iso) => Date.parse(iso) / 1000;
const nav = (name) => document.querySelectorAll("[data-nav]").forEach((a) =>
  a.classList.toggle("active", a.dataset.nav === name));

function sloState(slos) {
  if (!slos.length) return el("span", { class: "pill ok" }, "no SLO");
  if (slos.some((s) => s.page)) return el("span", { class: "pill bad" }, "paging");
  if (slos.some((s) => s.error_budget_remaining !== null && s.error_budget_remaining < 0))
    return el("span", { class: "pill bad" }, "budget spent");
  if (slos.some((s) => s.ticket)) return el("span", { class: "pill warn" }, "ticket");
  return el("span", { class: "pill ok" }, "ok");
}

// ---- Services ---------------------------------------------------------------------------

async function servicesPage() {
  nav("services");
  const [{ services }, { slos }] = await Promise.all([api("/api/v1/services"), api("/api/v1/slos")]);
  const rows = services.map((s) => {
    const own = slos.filter((o) => o.service_name === s.service_name);
    const k = s.latest || {};
    const budget = own.length ? Math.min(...own.map((o) => o.error_budget_remaining ?? 1)) : null;
    return el("tr", {},
      el("td", {}, el("a", { href: "#/service/" + encodeURIComponent(s.service_name) }, s.service_name)),
      el("td", { class: "num" }, fmt(k.rate_per_second)),
      el("td", { class: "num" }, pct(k.availability)),
      el("td", { class: "num" }, fmt(k.p50_ms, 1)),
      el("td", { class: "num" }, fmt(k.p95_ms, 1)),
      el("td", { class: "num" }, fmt(k.p99_ms, 1)),
      el("td", { class: "num" }, fmt(k.apdex, 3)),
      el("td", {}, sloState(own)),
      el("td", { class: "num" }, budget === null ? "–" : pct(budget, 1)));
  });
  const graph = el("div", { class: "card" }, el("h2", {}, "Dependencies, last hour"),
    el("p", { class: "muted" }, "loading…"));
  main.replaceChildren(
    el("h1", {}, "Services"),
    el("div", { class: "card" },
      el("p", { class: "muted" }, "The last full minute of each service (service_kpi_1m) and its SLOs now (slo_status)."),
      el("table", { id: "services" },
        el("thead", {}, el("tr", {}, ["service", "req/s", "availability", "p50 ms", "p95 ms", "p99 ms", "Apdex", "SLO", "budget left"]
          .map((h, i) => el("th", { class: i && i < 7 || i === 8 ? "num" : "" }, h)))),
        el("tbody", {}, rows))),
    graph);
  await dependencyGraph(graph);
}

async function dependencyGraph(card) {
  const result = await sql(
    "SELECT client, server, sum(requests) AS calls, sum(failed) AS failed FROM service_graph_1m " +
    "WHERE \"time\" > now() - INTERVAL '1 hour' GROUP BY 1, 2 ORDER BY 1, 2");
  const edges = result.rows.map(([client, server, calls, failed]) => ({ client, server, calls, failed }));
  const names = [...new Set(edges.flatMap((e) => [e.client, e.server]))];
  // Layers: a node sits one right of its furthest caller (the graph is a DAG in practice;
  // the depth is capped so a cycle cannot loop).
  const depth = Object.fromEntries(names.map((n) => [n, 0]));
  for (let pass = 0; pass < names.length; pass++) {
    for (const e of edges) depth[e.server] = Math.min(names.length, Math.max(depth[e.server], depth[e.client] + 1));
  }
  const layers = [];
  for (const n of names) (layers[depth[n]] ||= []).push(n);
  const width = 1100, height = 420, pos = {};
  layers.forEach((layer, d) => layer.forEach((n, i) => {
    pos[n] = { x: 70 + d * ((width - 140) / Math.max(1, layers.length - 1)), y: (i + 1) * height / (layer.length + 1) };
  }));
  const failing = new Set(edges.filter((e) => e.failed > 0 && e.failed / e.calls > 0.01).map((e) => e.server));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "graph");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.dataset.nodes = names.length;
  svg.dataset.edges = edges.length;
  const add = (parent, tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    parent.append(n);
    return n;
  };
  for (const e of edges) {
    const a = pos[e.client], b = pos[e.server];
    const line = add(svg, "line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: e.failed / e.calls > 0.01 ? "failing" : "" });
    add(line, "title", {}, `${e.client} → ${e.server}: ${e.calls} calls, ${e.failed} failed`);
  }
  for (const n of names) {
    const g = add(svg, "g", { class: "node" + (failing.has(n) ? " failing" : ""), transform: `translate(${pos[n].x},${pos[n].y})` });
    add(g, "circle", { r: 16 });
    add(g, "text", { y: 32, "text-anchor": "middle" }, n);
  }
  card.replaceChildren(el("h2", {}, "Dependencies, last hour"),
    el("p", { class: "muted" }, "From the traces (service_graph_1m); red: more than 1 % of calls failed."),
    names.length ? svg : el("p", { class: "muted" }, "No calls in the last hour."));
}

// ---- One service ------------------------------------------------------------------------

function chart(container, title, xs, series, opts = {}) {
  const width = Math.max(320, container.clientWidth - 32);
  const plot = new uPlot({
    title, width, height: 220,
    scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, width: s.width ?? 1.5, dash: s.dash, spanGaps: false, points: { show: false } }))],
    bands: opts.bands,
    axes: [{}, { label: opts.unit, size: 60 }],
  }, [xs, ...series.map((s) => s.values)], container);
  container.dataset.points = series[0].values.filter((v) => v !== null).length;
  return plot;
}

async function servicePage(name) {
  nav("services");
  const to = new Date(), from = new Date(to - 6 * 3600e3);
  const q = `from=${from.toISOString()}&to=${to.toISOString()}`;
  const path = encodeURIComponent(name);
  const [kpis, forecast, rec] = await Promise.all([
    api(`/api/v1/services/${path}/kpis?${q}`),
    api(`/api/v1/forecast/${path}`).catch((e) => ({ error: e.message })),
    api(`/api/v1/recommendations/${path}`).catch((e) => ({ error: e.message })),
  ]);
  const s = kpis.summary || {};
  const load = el("div", { class: "card chart", id: "chart-rate" });
  const errors = el("div", { class: "card chart", id: "chart-errors" });
  const latency = el("div", { class: "card chart", id: "chart-latency" });
  main.replaceChildren(
    el("h1", {}, name),
    el("div", { class: "card stats" },
      [["requests/s", fmt(s.rate_per_second)], ["availability", pct(s.availability, 3)], ["p50", fmt(s.p50_ms, 1) + " ms"],
        ["p95", fmt(s.p95_ms, 1) + " ms"], ["p99", fmt(s.p99_ms, 1) + " ms"], ["Apdex", fmt(s.apdex, 3)]]
        .map(([k, v]) => el("div", { class: "stat" }, el("b", {}, v), el("span", {}, k + ", last 6 h")))),
    el("div", { class: "grid" }, load, errors, latency, replicasCard(rec)));

  // History per minute, then the forecast's next 6 hours on the same time axis.
  const hist = kpis.series || [];
  const ahead = (forecast.points || []).filter((p) => secs(p.time) > secs(to.toISOString()) - 300 && secs(p.time) <= secs(to.toISOString()) + 6 * 3600);
  const xs = [...hist.map((p) => secs(p.time)), ...ahead.map((p) => secs(p.time))];
  const pad = (arr, before, after) => [...Array(before).fill(null), ...arr, ...Array(after).fill(null)];
  chart(load, forecast.error ? "Requests per second" : `Requests per second, forecast p10–p90 (${forecast.model})`, xs, [
    { label: "observed", stroke: "#3559e0", values: pad(hist.map((p) => p.rate_per_second), 0, ahead.length) },
    { label: "forecast p50", stroke: "#7a5af8", dash: [6, 4], values: pad(ahead.map((p) => p.p50), hist.length, 0) },
    { label: "p10", stroke: "rgba(122,90,248,0.3)", values: pad(ahead.map((p) => p.p10), hist.length, 0) },
    { label: "p90", stroke: "rgba(122,90,248,0.3)", values: pad(ahead.map((p) => p.p90), hist.length, 0) },
  ], { unit: "req/s", bands: [{ series: [4, 3], fill: "rgba(122,90,248,0.12)" }] });
  load.dataset.forecastPoints = ahead.length;
  const hx = hist.map((p) => secs(p.time));
  chart(errors, "Errors per minute", hx, [
    { label: "errors", stroke: "#c01048", fill: "rgba(192,16,72,0.1)", values: hist.map((p) => p.errors) },
  ], { unit: "errors" });
  chart(latency, "Latency percentiles", hx, [
    { label: "p50", stroke: "#12805c", values: hist.map((p) => p.p50_ms) },
    { label: "p95", stroke: "#b54708", values: hist.map((p) => p.p95_ms) },
    { label: "p99", stroke: "#c01048", values: hist.map((p) => p.p99_ms) },
  ], { unit: "ms" });
}

function replicasCard(rec) {
  if (rec.error) {
    return el("div", { class: "card", id: "replicas" }, el("h2", {}, "Replicas"), el("p", { class: "muted" }, rec.error));
  }
  return el("div", { class: "card", id: "replicas" },
    el("h2", {}, "Replicas"),
    el("div", { class: "stats" },
      el("div", { class: "stat" }, el("b", {}, fmt(rec.current_replicas)), el("span", {}, "running")),
      el("div", { class: "stat" }, el("b", { id: "recommended" }, fmt(rec.recommended_replicas)), el("span", {}, "recommended")),
      el("div", { class: "stat" }, el("b", {}, rec.mode), el("span", {}, "mode")),
      el("div", { class: "stat" }, el("b", {}, rec.confidence), el("span", {}, "confidence"))),
    el("ul", { class: "reasons" }, (rec.reasons || []).map((r) => el("li", {}, r))));
}

// ---- Anomalies --------------------------------------------------------------------------

async function anomaliesPage() {
  nav("anomalies");
  const to = new Date(), from = new Date(to - 7 * 86400e3);
  const { anomalies } = await api(`/api/v1/anomalies?from=${from.toISOString()}&to=${to.toISOString()}`);
  const detail = el("div", { class: "card", id: "explanation" },
    el("p", { class: "muted" }, "Choose an anomaly to see what explains it."));
  const rows = anomalies.slice().reverse().map((a) => el("tr", {},
    el("td", {}, new Date(a.start_time).toLocaleString()),
    el("td", {}, el("a", { href: "#/service/" + encodeURIComponent(a.service_name) }, a.service_name)),
    el("td", {}, a.metric),
    el("td", { class: "num" }, fmt(a.minutes, 0)),
    el("td", { class: "num" }, fmt(a.observed, 4)),
    el("td", { class: "num" }, `${fmt(a.expected, 4)} (${fmt(a.lower, 4)} – ${fmt(a.upper, 4)})`),
    el("td", {}, el("span", { class: "pill " + (a.severity === "critical" ? "bad" : "warn") }, a.severity)),
    el("td", {}, el("button", { class: "explain", onclick: () => explain(a.anomaly_id, detail) }, "explain"))));
  main.replaceChildren(
    el("h1", {}, "Anomalies"),
    el("div", { class: "card scroll" },
      el("p", { class: "muted" }, "The last 7 days, newest first: minutes of a service's request rate, error ratio, p95 or CPU outside the band its detector expected (the anomalies table)."),
      el("table", { id: "anomalies" },
        el("thead", {}, el("tr", {}, ["start", "service", "series", "minutes", "observed", "expected (band)", "severity", ""]
          .map((h) => el("th", { class: ["minutes", "observed", "expected (band)"].includes(h) ? "num" : "" }, h)))),
        el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: 8, class: "muted" }, "none"))]))),
    detail);
}

async function explain(id, card) {
  card.replaceChildren(el("p", { class: "muted" }, "explaining " + id + "…"));
  try {
    const r = await api(`/api/v1/incidents/${encodeURIComponent(id)}/explain`);
    const x = r.explanation;
    const list = (title, causes, cls) => el("div", {},
      el("h3", {}, title),
      causes.length
        ? el("table", { class: cls },
          el("thead", {}, el("tr", {}, ["dimension", "value", "explains", "surprise", "bad before", "bad during", "share before → during"]
            .map((h, i) => el("th", { class: i > 1 ? "num" : "" }, h)))),
          el("tbody", {}, causes.slice(0, 8).map((c) => el("tr", {},
            el("td", {}, c.dimension),
            el("td", {}, c.path && c.path.length > 1 ? c.path.join(" → ") : c.value),
            el("td", { class: "num" }, pct(c.explanatory_power, 0)),
            el("td", { class: "num" }, fmt(c.surprise, 4)),
            el("td", { class: "num" }, fmt(c.bad_before, 0)),
            el("td", { class: "num" }, fmt(c.bad_during, 0)),
            el("td", { class: "num" }, `${pct(c.share_before, 0)} → ${pct(c.share_during, 0)}`)))))
        : el("p", { class: "muted" }, "no value of any dimension explains the change"));
    card.replaceChildren(
      el("h2", {}, id),
      el("p", { class: "muted" },
        `${x.service}: ${fmt(x.bad_during, 0)} ${x.signal} in ${new Date(r.window.from).toLocaleTimeString()}–${new Date(r.window.to).toLocaleTimeString()}, ` +
        `${fmt(x.bad_expected, 0)} expected from the hour before` + (x.slow_threshold_ms ? ` (slow: over ${fmt(x.slow_threshold_ms, 1)} ms)` : "")),
      list("Causes, best first", x.causes, "causes"),
      list("Symptoms", x.symptoms, "symptoms"));
  } catch (e) {
    card.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// ---- SQL --------------------------------------------------------------------------------

const DEFAULT_SQL = "SELECT slo_name, service_name, round(100 * sli, 3) AS sli_pct,\n" +
  "  round(100 * error_budget_remaining, 1) AS budget_left_pct, burn_rate_1h, page, ticket\n" +
  "FROM slo_status\nORDER BY error_budget_remaining";

function sqlPage() {
  nav("sql");
  const box = el("textarea", { id: "sql-text", spellcheck: "false" }, DEFAULT_SQL);
  const out = el("div", { id: "sql-result", class: "scroll" });
  const run = async () => {
    out.replaceChildren(el("p", { class: "muted" }, "running…"));
    const started = performance.now();
    try {
      const r = await sql(box.value);
      const ms = performance.now() - started;
      out.replaceChildren(
        el("p", { class: "muted" }, `${r.rows.length} rows in ${fmt(ms, 0)} ms`),
        el("table", {},
          el("thead", {}, el("tr", {}, r.columns.map((c) => el("th", {}, c)))),
          el("tbody", {}, r.rows.map((row) => el("tr", {}, row.map((v) =>
            el("td", { class: typeof v === "number" ? "num" : "" }, v === null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : fmt(v, 6))))))));
    } catch (e) {
      out.replaceChildren(el("p", { class: "error" }, e.message));
    }
  };
  box.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
  main.replaceChildren(el("h1", {}, "SQL"),
    el("div", { class: "card" },
      el("p", { class: "muted" }, "Any query over the tables and KPI views (the same as POST /api/v1/sql and the PostgreSQL port). Ctrl+Enter runs it."),
      box, el("button", { id: "sql-run", onclick: run }, "Run")),
    el("div", { class: "card" }, out));
}

// ---- Routing ----------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/";
  statusLine.textContent = "";
  main.replaceChildren(el("p", { class: "muted" }, "loading…"));
  try {
    if (hash.startsWith("#/service/")) await servicePage(decodeURIComponent(hash.slice(10)));
    else if (hash === "#/sql") sqlPage();
    else if (hash === "#/anomalies") await anomaliesPage();
    else await servicesPage();
    statusLine.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    main.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

window.addEventListener("hashchange", route);
route();
