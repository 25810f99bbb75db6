// The dashboard's page: the sweep list (#/) and a sweep (#/sweep/ID), drawn
// from the coordinator's JSON API and kept current with server-sent events.
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const TABLE_METRICS = ["board_accuracy", "spawn_recall", "spawn_precision",
  "spawn_validity", "cell_accuracy"];
const TRIALS_SHOWN = 500;
const P_SHOWN = 40;
const SVG = "http://www.w3.org/2000/svg";

const main = document.getElementById("main");
let page = null; // the open sweep page's state, or null

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Replaces `node`'s children, leaving out the null ones.
function put(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function num(v) { return v === null || v === undefined || Number.isNaN(v) ? "NaN" : v.toFixed(4); }

function meanStd(s) {
  if (!s) return "-";
  let text = s.n === 0 ? "NaN" : `${num(s.mean)} ± ${num(s.std)}`;
  if (s.nan > 0) text += ` (${s.nan} NaN)`;
  return text;
}

function colour(i) { return i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360},60%,45%)`; }

function showError(where, e) {
  put(where, el("p", { class: "error" }, e.message));
}

// ---- the sweep list ----

async function listPage() {
  page = null;
  const sweeps = await api("/api/sweeps");
  const rows = sweeps.map((s) => {
    const done = s.completed + s.failed + s.cancelled + s.stopped;
    return el("tr", { class: "clickable", "data-sweep": s.id, onclick: () => { location.hash = `#/sweep/${s.id}`; } },
      el("td", {}, s.id),
      el("td", { class: "label" }, el("a", { href: `#/sweep/${s.id}` }, s.name)),
      el("td", { class: "label" }, s.status),
      el("td", {}, el("span", { class: "bar" }, el("i", { style: `width:${s.trials ? (100 * done) / s.trials : 0}%` })), ` ${done}/${s.trials}`),
      el("td", {}, s.running), el("td", {}, s.queued), el("td", {}, s.failed),
      el("td", { class: "label" }, s.method));
  });
  put(main, el("h1", {}, "Sweeps"),
    sweeps.length === 0 ? el("p", {}, "No sweeps yet: `coordinator submit FILE`.") :
      el("section", {}, el("table", { id: "sweeps" },
        el("tr", {}, ["id", "name", "status", "progress", "running", "queued", "failed", "method"]
          .map((h, i) => el("th", { class: i === 1 || i === 2 || i === 7 ? "label" : null }, h))),
        rows)));
}

// ---- a sweep ----

async function sweepPage(id) {
  // Everything the page first shows, asked for at once: without metric= and
  // split= the server answers for the sweep's own metric, as the page's
  // controls start.
  const first = {
    curves: api(`/api/sweeps/${id}/curves`),
    results: api(`/api/sweeps/${id}/results`),
    pvalues: api(`/api/sweeps/${id}/compare?top=${P_SHOWN}`),
    predictions: api(`/api/sweeps/${id}/predictions?config=`),
  };
  for (const pending of Object.values(first)) pending.catch(() => {});
  const detail = await api(`/api/sweeps/${id}?trials=${TRIALS_SHOWN}`);
  const sweep = detail.sweep;
  const longest = Math.max(1, detail.longest_epochs);
  page = {
    id, sweep, metrics: detail.metrics, trials: new Map(),
    metric: sweep.metric, split: sweep.metric_split || "test",
    reading: "last", epoch: "", pMetric: sweep.metric, repeatsOf: "", stops: false,
    candidates: detail.sweep.stop_epochs.length ? detail.sweep.stop_epochs.join(",") : defaultCandidates(longest),
    labels: new Map(), hidden: new Set(), curves: null, results: null, stopResults: null, events: null,
  };
  for (const t of detail.trials) page.trials.set(t.id, t);
  put(main,
    el("h1", { id: "title" }, `Sweep ${sweep.id} · ${sweep.name}`),
    el("p", { id: "summary" }),
    el("section", {}, el("h2", {}, "Learning curves"), el("div", { class: "controls", id: "curve-controls" }),
      el("div", { id: "curves" }), el("div", { class: "legend", id: "legend" })),
    el("section", {}, el("h2", {}, "Results by configuration"), el("div", { class: "controls", id: "result-controls" }),
      el("div", { class: "scroll", id: "results" })),
    el("section", {}, el("h2", {}, "Welch t-tests between configurations (two-sided p-values)"),
      el("div", { class: "controls", id: "p-controls" }), el("div", { class: "scroll", id: "pvalues" })),
    sweep.method !== "grid" ? el("section", {}, el("h2", {}, "Parameters against the metric"), el("div", { id: "parallel" })) : null,
    el("section", {}, el("h2", {}, "Predictions on test items"), el("div", { class: "controls", id: "prediction-controls" }),
      el("div", { class: "scroll", id: "predictions" })),
    el("section", {}, el("h2", {}, "Trials"), el("div", { class: "scroll", id: "trials" })));
  drawSummary();
  drawControls();
  drawTrials();
  await Promise.all([loadCurves(first.curves), loadResults(first.results), loadPvalues(first.pvalues),
    loadPredictions(first.predictions)]);
  follow(id, detail.changed_ms);
}

// Without declared stopping epochs: ten candidates spread up to the
// longest trial's last.
function defaultCandidates(epochs) {
  const n = Math.min(10, epochs);
  return [...new Set(Array.from({ length: n }, (_, i) => Math.round((epochs * (i + 1)) / n)))].join(",");
}

function drawSummary() {
  const s = page.sweep;
  const done = s.completed + s.failed + s.cancelled + s.stopped;
  put(document.getElementById("summary"),
    el("span", { class: "bar" }, el("i", { style: `width:${s.trials ? (100 * done) / s.trials : 0}%` })),
    ` ${s.status}: ${s.trials} trials, ${s.completed} completed, ${s.stopped} stopped early, ${s.failed} failed, ` +
    `${s.cancelled} cancelled, ${s.running} running, ${s.queued} queued. Metric: ${s.metric_split} ${s.metric} ` +
    `(${s.maximize ? "higher" : "lower"} is better).` + (s.early_stopping ? ` Early stopping: ${s.early_stopping}.` : "") +
    (s.metric_precision === "float32" ? " Values stored rounded to 32-bit floats (metric_precision: float32)." : ""));
}

function select(id, options, value, onchange) {
  return el("select", { id, onchange: (e) => onchange(e.target.value) },
    options.map(([v, label]) => el("option", { value: v, selected: v === value ? "" : null }, label)));
}

function drawControls() {
  const metricOptions = () => page.metrics[page.split].map((m) => [m, m]);
  const curveControls = document.getElementById("curve-controls");
  const configs = [...new Set([...page.trials.values()].map((t) => t.config))];
  const label = (key) => page.labels.get(key) || key;
  put(curveControls,
    el("label", {}, "metric ", select("curve-metric", metricOptions(), page.metric, (v) => { page.metric = v; loadCurves(); })),
    el("label", {}, "split ", select("curve-split", [["test", "test"], ["train", "train"]], page.split, (v) => {
      page.split = v;
      if (!page.metrics[v].includes(page.metric)) page.metric = page.metrics[v][0];
      drawControls(); loadCurves(); loadResults(); loadPvalues();
    })),
    el("label", {}, "repeats of ", select("curve-repeats", [["", "none"], ...configs.map((c) => [c, label(c)])], page.repeatsOf,
      (v) => { page.repeatsOf = v; loadCurves(); })),
    el("label", {}, el("input", { type: "checkbox", id: "curve-stops", checked: page.stops ? "" : null,
      onchange: (e) => { page.stops = e.target.checked; loadCurves(); } }), " stopping epochs"));
  put(document.getElementById("result-controls"),
    el("label", {}, "read at ", select("reading", [["last", "each configuration's last epoch"], ["stop", "stopping epochs"], ["epoch", "epoch"]],
      page.reading, (v) => { page.reading = v; loadResults(); loadPvalues(); })),
    el("input", { type: "number", id: "reading-epoch", min: 1, value: page.epoch, placeholder: "epoch",
      onchange: (e) => { page.epoch = e.target.value; if (page.reading === "epoch") { loadResults(); loadPvalues(); } } }),
    el("label", {}, "candidate stopping epochs ", el("input", { type: "text", id: "candidates", value: page.candidates, size: 28,
      onchange: (e) => { page.candidates = e.target.value; loadCurves(); if (page.reading === "stop") { loadResults(); loadPvalues(); } } })));
  put(document.getElementById("p-controls"),
    el("label", {}, "metric ", select("p-metric", metricOptions(), page.pMetric, (v) => { page.pMetric = v; loadPvalues(); })));
}

function readingQuery() {
  const q = new URLSearchParams({ split: page.split });
  if (page.reading === "stop") q.set("stop", page.candidates);
  if (page.reading === "epoch" && page.epoch) q.set("epoch", page.epoch);
  return q;
}

// Each load asks the server, or takes the answer the page asked for first.
async function loadCurves(pending) {
  const box = document.getElementById("curves");
  try {
    const q = new URLSearchParams({ split: page.split, metric: page.metric });
    const [curves, stops, repeats] = await Promise.all([
      pending || api(`/api/sweeps/${page.id}/curves?${q}`),
      // Choosing stopping epochs reads every candidate epoch of every trial:
      // only when they are shown.
      page.stops ? api(`/api/sweeps/${page.id}/results?${new URLSearchParams({ split: page.split, stop: page.candidates })}`).catch(() => null) : null,
      page.repeatsOf ? api(`/api/sweeps/${page.id}/repeats?${new URLSearchParams({ split: page.split, metric: page.metric, config: page.repeatsOf })}`) : null,
    ]);
    page.curves = curves; page.stopResults = stops; page.repeats = repeats;
    const known = page.labels.size;
    for (const c of curves.curves) page.labels.set(c.config_key, c.configuration);
    if (page.labels.size !== known) { drawControls(); drawTrials(); }
    drawCurves();
  } catch (e) { showError(box, e); }
}

function drawCurves() {
  const box = document.getElementById("curves");
  const curves = page.curves.curves;
  const W = 900, H = 380, L = 60, R = 20, T = 15, B = 40;
  let maxEpoch = 1, lo = Infinity, hi = -Infinity;
  const visible = (c) => !page.hidden.has(c.config_key);
  for (const c of curves) {
    if (!visible(c)) continue;
    for (const p of c.points) {
      maxEpoch = Math.max(maxEpoch, p.epoch);
      if (p.mean === null) continue;
      const s = p.std === null ? 0 : p.std;
      lo = Math.min(lo, p.mean - s); hi = Math.max(hi, p.mean + s);
    }
  }
  for (const t of (page.repeats && page.repeats.trials) || []) {
    for (const [, v] of t.points) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x = (e) => L + ((e - 1) / Math.max(1, maxEpoch - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const svg = el("svg:svg", { id: "curves-svg", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
    "aria-label": `${page.split} ${page.metric} by configuration` });
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eee" }),
      el("svg:text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(3)));
  }
  const ticks = Math.min(maxEpoch, 10);
  for (let i = 0; i < ticks; i++) {
    const e = Math.round(1 + ((maxEpoch - 1) * i) / Math.max(1, ticks - 1));
    svg.append(el("svg:text", { x: x(e), y: H - B + 16, "text-anchor": "middle" }, e));
  }
  svg.append(el("svg:text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "epoch"),
    el("svg:text", { x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`, "text-anchor": "middle" },
      `${page.split} ${page.metric}`));
  // The candidate stopping epochs, and per configuration the one chosen.
  const chosen = new Map();
  for (const c of (page.stopResults && page.stopResults.configurations) || []) chosen.set(c.config_key, c.epoch);
  if (page.stops) {
    for (const e of page.candidates.split(",").map(Number).filter((e) => e >= 1 && e <= maxEpoch)) {
      svg.append(el("svg:line", { class: "candidate", x1: x(e), x2: x(e), y1: T, y2: H - B, stroke: "#bbb", "stroke-dasharray": "4 3" }));
    }
  }
  curves.forEach((c, i) => {
    if (!visible(c)) return;
    const pts = c.points.filter((p) => p.mean !== null);
    const g = el("svg:g", { class: "curve", "data-config": c.config_key, "data-points": c.points.length,
      "data-last-epoch": c.points.length ? c.points[c.points.length - 1].epoch : 0 });
    if (pts.length) {
      const upper = pts.map((p) => `${x(p.epoch)},${y(p.mean + (p.std || 0))}`);
      const lower = pts.map((p) => `${x(p.epoch)},${y(p.mean - (p.std || 0))}`).reverse();
      g.append(el("svg:polygon", { points: upper.concat(lower).join(" "), fill: colour(i), "fill-opacity": 0.15, stroke: "none" }),
        el("svg:polyline", { points: pts.map((p) => `${x(p.epoch)},${y(p.mean)}`).join(" "), fill: "none", stroke: colour(i), "stroke-width": 2 },
          el("svg:title", {}, c.configuration)));
      const e = chosen.get(c.config_key);
      // The nearest point drawn (curves of many epochs come downsampled).
      const p = e ? pts.reduce((b, q) => (Math.abs(q.epoch - e) < Math.abs(b.epoch - e) ? q : b)) : null;
      if (page.stops && p) {
        g.append(el("svg:circle", { class: "stop", "data-epoch": e, cx: x(e), cy: y(p.mean), r: 5, fill: "#fff", stroke: colour(i), "stroke-width": 2 },
          el("svg:title", {}, `${c.configuration}: stopping epoch ${e} (best mean ${page.sweep.metric_split} ${page.sweep.metric} among the candidates)`)));
      }
    }
    svg.append(g);
    if (page.repeats && page.repeats.config_key === c.config_key) {
      for (const t of page.repeats.trials) {
        const rp = t.points.filter(([, v]) => v !== null);
        svg.append(el("svg:polyline", { class: "repeat", "data-trial": t.id, points: rp.map(([e, v]) => `${x(e)},${y(v)}`).join(" "),
          fill: "none", stroke: colour(i), "stroke-width": 1, "stroke-dasharray": "3 2" }, el("svg:title", {}, `trial ${t.id}, repeat ${t.repeat}`)));
      }
    }
  });
  put(box, svg);
  put(document.getElementById("legend"), ...curves.map((c, i) =>
    el("span", { class: visible(c) ? null : "off", title: "show or hide", onclick: () => {
      if (page.hidden.has(c.config_key)) page.hidden.delete(c.config_key); else page.hidden.add(c.config_key);
      drawCurves();
    } }, el("i", { style: `background:${colour(i)}` }), c.configuration)));
}

async function loadResults(pending) {
  const box = document.getElementById("results");
  try {
    page.results = await (pending || api(`/api/sweeps/${page.id}/results?${readingQuery()}`));
    drawResults();
    drawParallel();
  } catch (e) { showError(box, e); }
}

function drawResults() {
  const r = page.results;
  const shown = [...TABLE_METRICS];
  if (!shown.includes(page.sweep.metric) && r.configurations.some((c) => c.metrics[page.sweep.metric])) shown.push(page.sweep.metric);
  const head = el("tr", {}, el("th", { class: "label" }, "configuration"), el("th", {}, "trials"), el("th", {}, "epoch"),
    shown.map((m) => [el("th", {}, m), el("th", {}, "95% CI")]));
  const rows = r.configurations.map((c) => el("tr", { "data-config": c.config_key },
    el("td", { class: "label" }, c.configuration, c.stopped_early ? el("span", { class: "reason" }, ` (${c.stopped_early} stopped early)`) : null),
    el("td", {}, c.trials), el("td", {}, c.epoch),
    shown.map((m) => {
      const s = c.metrics[m];
      return [el("td", { "data-metric": m }, meanStd(s)),
        el("td", {}, s && s.ci95 ? `[${num(s.ci95[0])}, ${num(s.ci95[1])}]` : "-")];
    })));
  put(document.getElementById("results"),
    el("p", { class: "muted" }, `${r.split}, read at ${page.reading === "last" ? "each configuration's last epoch" :
      page.reading === "stop" ? "each configuration's stopping epoch" : `epoch ${page.epoch || "?"}`}; mean ± sample std over repeats.`),
    el("table", { id: "results-table" }, head, rows));
}

async function loadPvalues(pending) {
  const box = document.getElementById("pvalues");
  try {
    const q = readingQuery(); q.set("metric", page.pMetric); q.set("top", P_SHOWN);
    const r = await (pending || api(`/api/sweeps/${page.id}/compare?${q}`));
    if (r.labels.length < 2) { put(box, el("p", { class: "muted" }, "Fewer than two configurations with values yet.")); return; }
    const shown = r.labels;
    const cls = (v) => (v === null ? null : v < 0.001 ? "p001" : v < 0.01 ? "p01" : v < 0.05 ? "p05" : null);
    put(box,
      r.configurations > shown.length ? el("p", { class: "muted" }, `The ${shown.length} configurations with the highest mean of ${r.configurations}.`) : null,
      el("table", { id: "pvalues-table" },
        el("tr", {}, el("th", {}, ""), shown.map((l, j) => el("th", { title: l }, `#${j + 1}`))),
        shown.map((a, i) => el("tr", {}, el("th", { class: "label" }, `#${i + 1} ${a}`, el("span", { class: "muted" }, ` (mean ${num(r.means[i])})`)),
          shown.map((b, j) => {
            if (i === j) return el("td", {}, "");
            const v = r.pvalues[i][j];
            return el("td", { class: cls(v), "data-a": a, "data-b": b }, v === undefined ? "-" : v === null ? "NaN" : v.toPrecision(3));
          })))),
      el("p", { class: "muted" }, "Rows and columns by mean, highest first. Shaded: p < 0.05, darker p < 0.01, darkest p < 0.001."));
  } catch (e) { showError(box, e); }
}

// Parallel coordinates: one axis per parameter that varies, and the sweep's
// metric; one line per configuration.
function drawParallel() {
  const box = document.getElementById("parallel");
  if (!box) return;
  const metric = page.sweep.metric;
  const rows = page.results.configurations.map((c) => {
    const params = Object.fromEntries(c.config_key.split(" ").map((kv) => kv.split("=")));
    const s = c.metrics[metric];
    return { params, value: s && s.mean !== null ? s.mean : NaN, label: c.configuration };
  });
  const names = Object.keys(rows[0] ? rows[0].params : {}).filter((k) => new Set(rows.map((r) => r.params[k])).size > 1);
  const axes = [...names, metric];
  const W = 900, H = 300, T = 25, B = 20, L = 60, R = 60;
  const ax = (i) => L + (i * (W - L - R)) / Math.max(1, axes.length - 1);
  const scale = (k) => {
    const values = k === metric ? rows.map((r) => r.value) : rows.map((r) => r.params[k]);
    const numeric = values.every((v) => v !== undefined && !Number.isNaN(Number(v)));
    if (numeric) {
      const n = values.map(Number).filter(Number.isFinite);
      const log = k !== metric && n.length > 0 && n.every((v) => v > 0) && Math.max(...n) / Math.min(...n) > 100;
      const f = log ? Math.log10 : (v) => v;
      const lo = Math.min(...n.map(f)), hi = Math.max(...n.map(f));
      return { at: (v) => (Number.isFinite(Number(v)) ? (hi > lo ? (f(Number(v)) - lo) / (hi - lo) : 0.5) : null),
        ticks: [lo, hi].map((t) => (log ? [10 ** t, `1e${t.toFixed(1)}`] : [t, t.toPrecision(3)])) };
    }
    const levels = [...new Set(values)].sort();
    return { at: (v) => (levels.length > 1 ? levels.indexOf(v) / (levels.length - 1) : 0.5), ticks: [], levels };
  };
  const scales = axes.map(scale);
  const y = (u) => T + (1 - u) * (H - T - B);
  const svg = el("svg:svg", { id: "parallel-svg", viewBox: `0 0 ${W} ${H}`, width: "100%" });
  const values = rows.map((r) => r.value).filter(Number.isFinite);
  const vlo = Math.min(...values), vhi = Math.max(...values);
  for (const r of rows) {
    const pts = axes.map((k, i) => {
      const u = scales[i].at(k === metric ? r.value : r.params[k]);
      return u === null ? null : `${ax(i)},${y(u)}`;
    }).filter((p) => p !== null);
    const good = Number.isFinite(r.value) && vhi > vlo ? (r.value - vlo) / (vhi - vlo) : 0.5;
    const shade = page.sweep.maximize ? good : 1 - good;
    svg.append(el("svg:polyline", { class: "configuration", points: pts.join(" "), fill: "none",
      stroke: `hsl(${Math.round(shade * 120)},70%,40%)`, "stroke-opacity": 0.7, "stroke-width": 1.5 }, el("svg:title", {}, `${r.label}: ${num(r.value)}`)));
  }
  axes.forEach((k, i) => {
    svg.append(el("svg:line", { x1: ax(i), x2: ax(i), y1: T, y2: H - B, stroke: "#999" }),
      el("svg:text", { x: ax(i), y: T - 8, "text-anchor": "middle" }, k));
    const s = scales[i];
    for (const level of s.levels || []) {
      svg.append(el("svg:text", { x: ax(i) + 4, y: y(s.at(level)) + 4 }, level));
    }
    for (const [v, label] of s.ticks) {
      svg.append(el("svg:text", { x: ax(i) + 4, y: y(s.at(v)) + 4 }, label));
    }
  });
  put(box, svg);
}

// A board (220 cells of "0"/"1", 22 rows of 10) as a small SVG; cells of
// a prediction that differ from the truth are red.
function board(cells, truth, title) {
  const C = 7;
  const svg = el("svg:svg", { class: "board", width: 10 * C + 1, height: 22 * C + 1, viewBox: `0 0 ${10 * C + 1} ${22 * C + 1}` },
    el("svg:title", {}, title), el("svg:rect", { x: 0, y: 0, width: 10 * C + 1, height: 22 * C + 1, fill: "#f4f4f4", stroke: "#ccc" }));
  for (let i = 0; i < 220; i++) {
    const wrong = truth && cells[i] !== truth[i];
    if (cells[i] === "1" || wrong) {
      svg.append(el("svg:rect", { x: (i % 10) * C + 1, y: Math.floor(i / 10) * C + 1, width: C - 1, height: C - 1,
        fill: wrong ? (cells[i] === "1" ? "#d62728" : "#f7b6b6") : "#334" }));
    }
  }
  return svg;
}

async function loadPredictions(pending) {
  const box = document.getElementById("predictions");
  try {
    // The boards of the configuration shown (at first, the first one's);
    // the others are only listed.
    const q = new URLSearchParams({ config: page.predictionsOf || "" });
    page.predictions = await (pending || api(`/api/sweeps/${page.id}/predictions?${q}`));
    drawPredictions();
  } catch (e) { showError(box, e); }
}

function drawPredictions() {
  const all = page.predictions.configurations;
  const box = document.getElementById("predictions");
  if (all.length === 0) {
    put(document.getElementById("prediction-controls"));
    put(box, el("p", { class: "muted" }, "No predictions yet: workers send them with checkpoints and at the end of a trial."));
    return;
  }
  if (!all.some((c) => c.config_key === page.predictionsOf)) page.predictionsOf = all[0].config_key;
  put(document.getElementById("prediction-controls"),
    el("label", {}, "configuration ", select("prediction-config", all.map((c) => [c.config_key, c.configuration]), page.predictionsOf,
      (v) => { page.predictionsOf = v; loadPredictions(); })));
  const c = all.find((x) => x.config_key === page.predictionsOf);
  put(box,
    el("p", { class: "muted" }, `Trial ${c.trial} (repeat ${c.repeat}) at epoch ${c.epoch}: input, predicted (red: cells that differ from the truth) and true next board.`),
    el("div", { class: "samples", "data-config": c.config_key, "data-epoch": c.epoch },
      c.samples.map((s) => el("figure", { class: "sample", "data-item": s.item },
        el("div", { class: "boards" }, board(s.input, null, "input"), board(s.predicted, s.truth, "predicted"), board(s.truth, null, "true")),
        el("figcaption", {}, `${s.kind} · item ${s.item}`, s.predicted === s.truth ? " · exact" : "")))));
}

function drawTrials() {
  const order = { running: 0, queued: 1, failed: 2, stopped: 3, completed: 4, cancelled: 5 };
  const trials = [...page.trials.values()].sort((a, b) => (order[a.status] ?? 9) - (order[b.status] ?? 9) || a.id - b.id);
  const rows = trials.slice(0, TRIALS_SHOWN).map((t) => el("tr", { "data-trial": t.id, "data-epochs": t.epochs_done },
    el("td", {}, t.id), el("td", { class: `label status-${t.status}` }, t.status), el("td", {}, t.repeat),
    el("td", { class: "epochs" }, `${t.epochs_done}/${t.epochs}`), el("td", {}, t.attempts), el("td", { class: "label" }, t.worker),
    el("td", { class: "label", title: t.config }, page.labels.get(t.config) || t.config,
      t.stop_reason ? el("div", { class: "reason" }, `stopped early: ${t.stop_reason}`) : null,
      t.error ? el("div", { class: "error" }, t.error) : null)));
  put(document.getElementById("trials"),
    page.sweep.trials > TRIALS_SHOWN ? el("p", { class: "muted" }, `The first ${TRIALS_SHOWN} of ${page.sweep.trials} trials, running first.`) : null,
    el("table", { id: "trials-table" },
      el("tr", {}, ["trial", "status", "repeat", "epochs", "attempts", "worker", "configuration"]
        .map((h, i) => el("th", { class: i === 1 || i >= 5 ? "label" : null }, h))), rows));
}

// Follows the sweep from `since` (the sweep document's newest change): trial
// changes redraw the trials table at once and the curves and tables at most
// every two seconds.
function follow(id, since) {
  const live = document.getElementById("live");
  const source = new EventSource(`/api/sweeps/${id}/events?since=${since}`);
  page.events = source;
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; if (page && page.id === id) { loadCurves(); loadResults(); loadPvalues(); loadPredictions(); } }, 2000);
  };
  source.addEventListener("trials", (e) => {
    if (!page || page.id !== id) return;
    let epochs = false;
    for (const t of JSON.parse(e.data)) {
      const before = page.trials.get(t.id);
      if (!before || before.epochs_done !== t.epochs_done || before.status !== t.status) epochs = true;
      page.trials.set(t.id, t);
    }
    drawTrials();
    if (epochs) refresh();
  });
  source.addEventListener("sweep", (e) => {
    if (!page || page.id !== id) return;
    page.sweep = JSON.parse(e.data);
    drawSummary();
  });
  source.onopen = () => { live.textContent = "live"; };
  source.onerror = () => { live.textContent = "reconnecting…"; };
}

async function route() {
  if (page && page.events) page.events.close();
  document.getElementById("live").textContent = "";
  const m = location.hash.match(/^#\/sweep\/(\d+)/);
  try {
    if (m) await sweepPage(Number(m[1])); else await listPage();
  } catch (e) { showError(main, e); }
}

window.addEventListener("hashchange", route);
route();
