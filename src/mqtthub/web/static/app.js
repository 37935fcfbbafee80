// mqtthub dashboard: a static page that uses only the public API (/api/*).
// Every device-supplied string is put into the page with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "mqtthub-api-token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  devices: new Map(), // id -> {id, name, status, status_reason, last_seen (ms), latest}
  rows: new Map(), // id -> <tr>
  page: null,
  deviceId: null,
  range: { seconds: 3600, from: null, to: null },
  lastStats: null,
  refreshTimer: null,
  serverCounts: null, // device counts from /api/stats until the whole list is loaded
};

// ------------------------------------------------------------------ helpers

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function toMs(value) {
  if (value === null || value === undefined) return null;
  return typeof value === "number" ? value * 1000 : Date.parse(value);
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function when(value) { return new Date(toMs(value)).toLocaleString(); }

function formatValue(value) {
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 100) / 100);
}

function valuesText(latest) {
  return Object.keys(latest || {}).sort().map((metric) => {
    const { value, unit } = latest[metric];
    return `${metric}=${formatValue(value)}${unit ? ` ${unit}` : ""}`;
  }).join("  ");
}

// Plotly reads a subset of HTML in titles: device-supplied text (units, names) is escaped.
function plotlyText(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    askToken();
    throw new Error("unauthorized");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response;
}

async function apiJson(path) { return (await api(path)).json(); }

function askToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

// ------------------------------------------------------------------ fleet page

function normalize(device) {
  const latest = {};
  for (const [metric, reading] of Object.entries(device.latest || {})) {
    latest[metric] = { value: reading.value, ts: toMs(reading.ts), unit: reading.unit || "", name: reading.name || "" };
  }
  return {
    id: device.id,
    name: device.name || "",
    status: device.status,
    status_reason: device.status_reason || "",
    last_seen: toMs(device.last_seen),
    latest,
  };
}

async function loadFleet() {
  // The first screenful comes from a small request so it shows at once however large the
  // fleet is; the whole list follows and is drawn in chunks.
  const [first, stats] = await Promise.all([
    apiJson(`/api/devices?latest=true&limit=${FIRST_SCREEN}`),
    apiJson("/api/stats"),
  ]);
  state.serverCounts = stats.devices || {};
  state.devices = new Map(first.map((d) => [d.id, normalize(d)]));
  renderFleet();
  const all = await apiJson("/api/devices?latest=true&limit=10000");
  for (const device of all.map(normalize)) {
    const known = state.devices.get(device.id);
    if (!known || (known.last_seen || 0) <= (device.last_seen || 0)) state.devices.set(device.id, device);
  }
  state.serverCounts = null;
  renderFleet();
}

function matchesFilter(device) {
  const search = $("search").value.trim().toLowerCase();
  const status = $("status-filter").value;
  if (status && device.status !== status) return false;
  if (!search) return true;
  return device.id.toLowerCase().includes(search) || device.name.toLowerCase().includes(search);
}

function deviceRow(device) {
  const link = el("a", { href: `#/device/${encodeURIComponent(device.id)}`, text: device.id });
  const row = el("tr", { "data-id": device.id },
    el("td", {}, el("span", { class: `dot ${device.status}`, title: device.status_reason || device.status })),
    el("td", {}, link),
    el("td", { text: device.name }),
    el("td", { class: "seen", text: ago(device.last_seen) }),
    el("td", { class: "values", text: valuesText(device.latest) }));
  return row;
}

const FIRST_SCREEN = 100; // rows drawn before the browser paints; the rest follow in chunks
const CHUNK = 1000;
let renderGeneration = 0;

function renderFleet() {
  const generation = ++renderGeneration;
  const body = $("device-rows");
  state.rows = new Map();
  const ids = [...state.devices.keys()].sort().filter((id) => matchesFilter(state.devices.get(id)));
  const append = (start, end) => {
    const fragment = document.createDocumentFragment();
    for (const id of ids.slice(start, end)) {
      const row = deviceRow(state.devices.get(id));
      state.rows.set(id, row);
      fragment.append(row);
    }
    body.append(fragment);
  };
  body.replaceChildren();
  append(0, FIRST_SCREEN);
  renderCounts();
  const more = (start) => {
    if (generation !== renderGeneration || start >= ids.length) return;
    append(start, start + CHUNK);
    setTimeout(() => more(start + CHUNK), 0);
  };
  setTimeout(() => more(FIRST_SCREEN), 0);
}

function renderCounts() {
  let online = 0;
  let total = state.devices.size;
  if (state.serverCounts) {
    online = state.serverCounts.online || 0;
    total = online + (state.serverCounts.offline || 0);
  } else {
    for (const device of state.devices.values()) if (device.status === "online") online += 1;
  }
  $("count-total").textContent = String(total);
  $("count-online").textContent = String(online);
  $("count-offline").textContent = String(total - online);
  $("fleet-empty").hidden = total > 0;
}

function applyDeviceEvent(event) {
  const known = state.devices.get(event.id);
  const device = known || { id: event.id, name: "", status: "offline", status_reason: "", last_seen: null, latest: {} };
  if (event.status) device.status = event.status;
  if (event.status_reason) device.status_reason = event.status_reason;
  if (event.last_seen) device.last_seen = toMs(event.last_seen);
  for (const [metric, reading] of Object.entries(event.latest || {})) {
    // Live events carry values only: the unit and name stay as loaded.
    device.latest[metric] = Object.assign({}, device.latest[metric], { value: reading.value, ts: toMs(reading.ts) });
  }
  state.devices.set(device.id, device);
  if (state.page === "fleet") updateRow(device, !known);
  if (state.page === "device" && state.deviceId === device.id) scheduleDeviceRefresh();
}

function updateRow(device, isNew) {
  const old = state.rows.get(device.id);
  if (!matchesFilter(device)) {
    if (old) { old.remove(); state.rows.delete(device.id); }
    renderCounts();
    return;
  }
  const row = deviceRow(device);
  if (old) old.replaceWith(row);
  else {
    const next = [...state.rows.keys()].sort().find((id) => id > device.id);
    $("device-rows").insertBefore(row, next ? state.rows.get(next) : null);
  }
  state.rows.set(device.id, row);
  if (isNew || old) renderCounts();
}

function tickLastSeen() {
  if (state.page !== "fleet") return;
  for (const [id, row] of state.rows) {
    row.querySelector(".seen").textContent = ago(state.devices.get(id).last_seen);
  }
}

// ------------------------------------------------------------------ device page

let plotlyLoading = null;
function loadPlotly() {
  if (window.Plotly) return Promise.resolve();
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = el("script", { src: "/vendor/plotly.min.js" });
      script.addEventListener("load", resolve);
      script.addEventListener("error", reject);
      document.head.append(script);
    });
  }
  return plotlyLoading;
}

function rangeBounds() {
  if (state.range.from && state.range.to) return [state.range.from / 1000, state.range.to / 1000];
  const now = Date.now() / 1000;
  return [now - state.range.seconds, now];
}

async function loadDevice(id) {
  const path = `/api/devices/${encodeURIComponent(id)}`;
  const device = await apiJson(path);
  $("device-title").textContent = device.name ? `${device.name} (${device.id})` : device.id;
  $("device-dot").className = `dot ${device.status}`;
  $("device-meta").textContent =
    `${device.status}${device.status_reason ? ` (${device.status_reason})` : ""} · last seen ` +
    `${ago(toMs(device.last_seen))} · first seen ${when(device.first_seen)} · last message ${device.last_message_type}`;
  await loadPlotly();
  const [since, until] = rangeBounds();
  const charts = $("charts");
  const metrics = Object.keys(device.latest).sort();
  const existing = new Map([...charts.children].map((node) => [node.dataset.metric, node]));
  for (const metric of metrics) {
    let node = existing.get(metric);
    if (!node) { node = el("div", { class: "chart", "data-metric": metric }); charts.append(node); }
    const query = new URLSearchParams({ metric, since: String(since), until: String(until) });
    const points = await apiJson(`${path}/series?${query}`);
    drawSeries(node, metric, points, device.latest[metric]);
  }
  await loadPresence(path, since, until);
  const messages = await apiJson(`${path}/messages`);
  $("recent-messages").replaceChildren(...messages.map((m) =>
    el("li", { text: `${when(m.received_at)}  ${m.topic}  ${m.payload}` })));
}

function drawSeries(node, metric, points, info) {
  const x = points.map((p) => new Date(toMs(p.ts)));
  const traces = [
    { x, y: points.map((p) => p.max), mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
    { x, y: points.map((p) => p.min), mode: "lines", fill: "tonexty", fillcolor: "rgba(43,108,176,0.15)", line: { width: 0 }, name: "min–max" },
    { x, y: points.map((p) => p.avg), mode: "lines+markers", marker: { size: 3 }, line: { color: "#2b6cb0" }, name: "avg" },
  ];
  const title = info && info.name ? `${info.name} (${metric})` : metric;
  const unit = info && info.unit ? info.unit : "";
  const layout = {
    title: { text: plotlyText(unit ? `${title}, ${unit}` : title), font: { size: 13 } },
    yaxis: { title: { text: plotlyText(unit) } },
    margin: { l: 50, r: 20, t: 30, b: 30 }, showlegend: false,
  };
  window.Plotly.react(node, traces, layout, { displaylogo: false, responsive: true });
}

async function loadPresence(path, since, until) {
  const events = await apiJson(`${path}/events?limit=500`);
  $("event-rows").replaceChildren(...events.slice(0, 50).map((e) => el("tr", {},
    el("td", { text: when(e.at) }), el("td", { text: e.status }),
    el("td", { text: e.reason }), el("td", { text: e.detail }))));
  const ordered = events.slice().reverse();
  const x = ordered.map((e) => new Date(toMs(e.at)));
  const y = ordered.map((e) => (e.status === "online" ? 1 : 0));
  if (x.length) { x.push(new Date(until * 1000)); y.push(y[y.length - 1]); }
  const trace = { x, y, mode: "lines", line: { shape: "hv", color: "#1f9d55" }, fill: "tozeroy",
    text: ordered.map((e) => `${e.status}: ${e.reason}`), hoverinfo: "x+text" };
  const layout = { margin: { l: 50, r: 20, t: 10, b: 25 }, yaxis: { range: [-0.1, 1.1], tickvals: [0, 1], ticktext: ["offline", "online"] },
    xaxis: { range: [new Date(since * 1000), new Date(until * 1000)] } };
  window.Plotly.react($("timeline"), [trace], layout, { displaylogo: false, responsive: true });
}

// The device's readings in the chosen range as CSV (GET /api/export). Without a token a
// plain link lets the browser stream the file to disk; a bearer token cannot ride on a
// link, so then the file is fetched with it and handed over as a Blob.
async function downloadCsv() {
  const [since, until] = rangeBounds();
  const query = new URLSearchParams({ device: state.deviceId, since: String(since), until: String(until), format: "csv" });
  const path = `/api/export?${query}`;
  const button = $("download-csv");
  if (!state.token) {
    const link = el("a", { href: path, download: "" });
    document.body.append(link);
    link.click();
    link.remove();
    return;
  }
  button.disabled = true;
  try {
    const response = await api(path);
    const named = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: named ? named[1] : "mqtthub-export.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } finally {
    button.disabled = false;
  }
}

function scheduleDeviceRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    if (state.page === "device") loadDevice(state.deviceId).catch(showError);
  }, 2000);
}

// ------------------------------------------------------------------ health page

async function loadHealth() {
  const connection = await apiJson("/api/connection");
  $("health-mqtt").textContent = `${connection.state}${connection.reason ? ` (${connection.reason})` : ""}` +
    `${connection.protocol ? `, ${connection.protocol}` : ""}, client id ${connection.client_id}` +
    `${connection.diagnosis ? ` — ${connection.diagnosis.message}` : ""}` +
    `${connection.session_lost ? ` — warning: session lost at ${when(connection.session_lost.at)}: ` +
      connection.session_lost.detail : ""}`;
  $("health-broker").textContent = connection.broker;
  $("connection-rows").replaceChildren(...connection.events.map((e) => el("tr", {},
    el("td", { text: when(e.at) }), el("td", { text: e.event }), el("td", { text: e.reason }),
    el("td", { text: e.lasted === null ? "" : `${e.lasted} s` }), el("td", { text: e.detail }))));
  const stats = await apiJson("/api/stats");
  const storage = stats.storage || {};
  $("health-db-size").textContent = formatBytes(storage.database_bytes);
  $("health-oldest").textContent = storage.oldest_reading ? when(storage.oldest_reading) : "–";
  const letters = await apiJson("/api/dead-letters?limit=50");
  $("dead-rows").replaceChildren(...letters.map((d) => el("tr", {},
    el("td", { text: when(d.received_at) }), el("td", { text: `${d.reason}: ${d.detail}` }),
    el("td", { text: d.topic }), el("td", { class: "payload", text: d.payload }))));
}

function formatBytes(bytes) {
  if (typeof bytes !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function applyStats(stats) {
  const pill = $("link-state");
  pill.textContent = stats.mqtt === "connected" ? `MQTT connected (${stats.protocol})` : `MQTT ${stats.mqtt}${stats.reason ? `: ${stats.reason}` : ""}`;
  pill.className = `pill ${stats.mqtt === "connected" && !stats.db_error ? "ok" : "bad"}`;
  const previous = state.lastStats;
  state.lastStats = { ...stats, at: Date.now() };
  if (state.page !== "health") return;
  $("health-queue").textContent = String(stats.queue_depth);
  $("health-db").textContent = stats.db_error ? `unavailable: ${stats.db_error}` : "ok";
  // A rate needs two samples of the counters (/healthz has none): until then, a dash.
  const seconds = previous ? (state.lastStats.at - previous.at) / 1000 : 0;
  const rate = (key) => {
    const change = seconds > 0 ? (stats[key] - previous[key]) / seconds : NaN;
    return Number.isFinite(change) ? formatValue(change) : "–";
  };
  $("rate-received").textContent = rate("messages_received");
  $("rate-stored").textContent = rate("messages_stored");
  $("rate-dead").textContent = rate("dead_letters");
  const counted = previous && Number.isFinite(previous.dead_letters) && Number.isFinite(stats.dead_letters);
  if (counted && stats.dead_letters !== previous.dead_letters) loadHealth().catch(showError);
}

// ------------------------------------------------------------------ live stream

async function followStream() {
  for (;;) {
    try {
      const response = await api("/api/stream");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (String(error).includes("unauthorized")) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function handleEvent(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const payload = JSON.parse(data);
  if (kind === "device") applyDeviceEvent(payload);
  else if (kind === "stats") applyStats(payload);
  else if (kind === "device_deleted") { state.devices.delete(payload.id); if (state.page === "fleet") renderFleet(); }
  else if (kind === "connection" && state.page === "health") loadHealth().catch(showError);
  else if (kind === "alert" && state.page === "alerts") loadAlerts().catch(showError);
  else if (kind === "resync") route();
}

// ------------------------------------------------------------------ routing

function showError(error) { console.error(error); }

function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/device\/(.+)$/);
  state.page = match ? "device" : hash === "#/health" ? "health" : hash === "#/alerts" ? "alerts" : "fleet";
  for (const page of ["fleet", "device", "health", "alerts"]) $(`${page}-page`).hidden = page !== state.page;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === state.page);
  }
  if (state.page === "device") {
    const id = decodeURIComponent(match[1]);
    if (state.deviceId !== id) $("charts").replaceChildren();
    state.deviceId = id;
    loadDevice(id).catch(showError);
  } else if (state.page === "health") loadHealth().catch(showError);
  else if (state.page === "alerts") loadAlerts().catch(showError);
  else loadFleet().catch(showError);
}

function setupControls() {
  $("search").addEventListener("input", renderFleet);
  $("status-filter").addEventListener("change", renderFleet);
  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      state.range = { seconds: Number(button.dataset.range), from: null, to: null };
      for (const other of document.querySelectorAll("[data-range]")) other.classList.toggle("active", other === button);
      loadDevice(state.deviceId).catch(showError);
    });
  }
  $("download-csv").addEventListener("click", () => downloadCsv().catch(showError));
  $("range-apply").addEventListener("click", () => {
    const from = Date.parse($("range-from").value);
    const to = Date.parse($("range-to").value);
    if (from && to && to > from) { state.range = { seconds: 0, from, to }; loadDevice(state.deviceId).catch(showError); }
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token-input").value;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token-form").hidden = true;
    route();
    followStream();
  });
}

async function showHealthz() {
  const response = await fetch("/healthz");
  const health = await response.json();
  applyStats({ mqtt: health.mqtt, reason: health.reason, protocol: health.protocol,
    db_error: health.db_error || null, queue_depth: health.queue_depth });
  state.lastStats = null;
}

document.addEventListener("DOMContentLoaded", () => {
  setupControls();
  showHealthz().catch(showError);
  window.addEventListener("hashchange", route);
  setInterval(tickLastSeen, 1000);
  route();
  followStream();
});
