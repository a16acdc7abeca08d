// The status page's script: the node's own HTTP API, nothing else.
"use strict";

const tokenKey = "caspaxos-token";
const refreshMillis = 2000;
const chartPoints = 60;
const pageKeys = 100;

const $ = (id) => document.getElementById(id);
let timer = null;
let lastMetrics = null; // {at, count, sum}
const series = { rps: [], latency: [] };
let browseAfter = "";

function token() { return sessionStorage.getItem(tokenKey) || ""; }

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// api fetches path with the user's token; a JSON error body becomes an APIError.
async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const resp = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  if (!resp.ok) {
    let code = "http", message = resp.status + " " + resp.statusText;
    try { const e = (await resp.json()).error; code = e.code; message = e.message; } catch (_) {}
    if (resp.status === 401) showLogin("");
    throw new APIError(resp.status, code, message);
  }
  return resp;
}

function keyPath(key) { return "/v1/kv/" + encodeURIComponent(key).replace(/%2F/g, "/"); }

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function fmtSeconds(s) {
  if (!s) return "-";
  if (s < 1e-3) return Math.round(s * 1e6) + " µs";
  if (s < 1) return (s * 1e3).toFixed(1) + " ms";
  return s.toFixed(2) + " s";
}

function showLogin(message) {
  sessionStorage.removeItem(tokenKey);
  $("login").hidden = false;
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = message;
  if (timer) { clearInterval(timer); timer = null; }
}

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = !token();
  $("auth-state").textContent = token() ? "logged in" : "";
  if (!timer) { timer = setInterval(refresh, refreshMillis); }
  refresh();
}

async function login(ev) {
  ev.preventDefault();
  try {
    const resp = await fetch("/v1/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: $("login-user").value, password: $("login-password").value }),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error ? body.error.message : resp.statusText);
    sessionStorage.setItem(tokenKey, body.token);
    $("login-password").value = "";
    showMain();
  } catch (e) {
    $("login-error").textContent = "Login failed: " + e.message;
  }
}

async function refresh() {
  await Promise.all([refreshMembers(), refreshStatus(), refreshMetrics()]);
}

let lastStatus = null;

async function refreshMembers() {
  let members, health;
  try {
    members = await (await api("/v1/members")).json();
  } catch (e) { $("health").textContent = "members: " + e.message; return; }
  try {
    health = await (await fetch("/v1/health", { cache: "no-store" })).json();
  } catch (e) { health = { healthy: false, message: e.message }; }
  $("config-version").textContent = "(membership version " + members.config_version + ")";
  const rtt = {};
  if (lastStatus && lastStatus.peers) lastStatus.peers.forEach((p) => { rtt[p.id] = p.rtt_seconds; });
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const m of members.members) {
    const row = body.insertRow();
    const self = m.id === members.self_id;
    const healthy = self ? health.healthy : m.reachable;
    row.dataset.name = m.name;
    row.dataset.health = healthy ? "healthy" : "unhealthy";
    cell(row, m.name + (self ? " (this node)" : ""));
    cell(row, String(m.id), "num");
    cell(row, m.peer_addr);
    cell(row, healthy ? (self ? "healthy" : "reachable") : (self ? "no quorum" : "unreachable"), healthy ? "healthy" : "unhealthy");
    cell(row, self ? "-" : fmtSeconds(rtt[m.id]), "num");
  }
  $("health").textContent = health.healthy ? "This node reaches a quorum." : "This node does not reach a quorum: " + (health.message || "");
}

async function refreshStatus() {
  try {
    const s = await (await api("/v1/status")).json();
    lastStatus = s;
    $("status-error").textContent = "";
    $("node-name").textContent = s.name;
    const rows = [
      ["Name", s.name], ["ID", String(s.id)], ["Version", s.version],
      ["Uptime", Math.round(s.uptime_seconds) + " s"],
      ["Data directory", fmtBytes(s.data_dir_bytes)], ["Store", fmtBytes(s.store_bytes)],
      ["Disk free", s.disk_free_bytes ? fmtBytes(s.disk_free_bytes) : "-"],
      ["Registers", s.counted_ago_seconds >= 0 ? s.registers + " (counted " + Math.round(s.counted_ago_seconds) + " s ago)" : "-"],
      ["Tombstones", s.counted_ago_seconds >= 0 ? String(s.tombstones) : "-"],
      ["GC queue", s.gc ? String(s.gc_queued) : "-"],
      ["Membership version", String(s.config_version)],
      ["WAL fsync p99", fmtSeconds(s.wal_fsync_p99_seconds)],
      ["Requests per second", s.requests_per_second.toFixed(1)],
      ["Requests since start", String(s.requests_total)],
      ["Quorum", s.quorum ? "yes" : "no: " + (s.quorum_error || "")],
    ];
    const body = $("figures").tBodies[0];
    body.replaceChildren();
    for (const [k, v] of rows) {
      const row = body.insertRow();
      row.dataset.figure = k;
      cell(row, k);
      cell(row, v);
    }
  } catch (e) {
    $("status-error").textContent = "status: " + e.message;
  }
}

// parseRequests sums caspaxos_request_duration_seconds' count and sum over
// every operation and outcome in a Prometheus text exposition.
function parseRequests(text) {
  let count = 0, sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("caspaxos_request_duration_seconds_count")) count += parseFloat(line.split(" ").pop());
    else if (line.startsWith("caspaxos_request_duration_seconds_sum")) sum += parseFloat(line.split(" ").pop());
  }
  return { count, sum };
}

async function refreshMetrics() {
  let text;
  try { text = await (await fetch("/metrics", { cache: "no-store" })).text(); } catch (_) { return; }
  const now = { at: performance.now() / 1000, ...parseRequests(text) };
  if (lastMetrics) {
    const dt = now.at - lastMetrics.at, dn = now.count - lastMetrics.count;
    push(series.rps, dt > 0 ? dn / dt : 0);
    push(series.latency, dn > 0 ? (now.sum - lastMetrics.sum) / dn * 1000 : 0);
    draw($("chart-rps"), series.rps);
    draw($("chart-latency"), series.latency);
  }
  lastMetrics = now;
}

function push(a, v) { a.push(v); if (a.length > chartPoints) a.shift(); }

function draw(canvas, points) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const top = Math.max(1e-9, ...points) * 1.1;
  ctx.fillStyle = "#666";
  ctx.font = "11px sans-serif";
  ctx.fillText(top.toFixed(top < 10 ? 2 : 0), 2, 12);
  ctx.fillText("0", 2, h - 4);
  ctx.strokeStyle = "#0b57d0";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((v, i) => {
    const x = pad + (w - pad - 4) * i / (chartPoints - 1);
    const y = h - 4 - (h - 16) * v / top;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function b64bytes(s) { return Uint8Array.from(atob(s || ""), (c) => c.charCodeAt(0)); }
function preview(bytes) {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  return text.length > 80 ? text.slice(0, 80) + "…" : text;
}

async function browse(ev, more) {
  if (ev) ev.preventDefault();
  const prefix = $("browse-prefix").value;
  if (!more) { browseAfter = ""; $("keys").tBodies[0].replaceChildren(); }
  let path = keyPath(prefix) + "?list&limit=" + pageKeys;
  if (browseAfter) path += "&after=" + encodeURIComponent(browseAfter);
  $("browse-error").textContent = "";
  try {
    const page = await (await api(path)).json();
    if (page.error) throw new Error(page.error.message || page.error);
    const body = $("keys").tBodies[0];
    for (const it of page.items) {
      const key = it.key !== undefined ? it.key : new TextDecoder().decode(b64bytes(it.key_b64));
      const row = body.insertRow();
      row.dataset.key = key;
      const k = cell(row, key);
      k.addEventListener("click", () => view(key));
      cell(row, String(it.version), "num");
      cell(row, it.value_omitted ? "(too large for a listing: click the key)" : preview(b64bytes(it.value)));
      browseAfter = key;
    }
    $("browse-more").hidden = !page.more;
  } catch (e) {
    $("browse-error").textContent = "listing: " + e.message;
  }
}

async function view(key) {
  try {
    const resp = await api(keyPath(key));
    const bytes = new Uint8Array(await resp.arrayBuffer());
    $("key-view-name").textContent = key;
    $("key-view-version").textContent = (resp.headers.get("ETag") || "").replace(/"/g, "");
    $("key-view-value").textContent = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
    $("key-view").hidden = false;
  } catch (e) {
    $("browse-error").textContent = key + ": " + e.message;
  }
}

async function start() {
  $("login-form").addEventListener("submit", login);
  $("browse-form").addEventListener("submit", (ev) => browse(ev, false));
  $("browse-more").addEventListener("click", () => browse(null, true));
  $("logout").addEventListener("click", () => { showLogin("Logged out."); $("auth-state").textContent = ""; });
  // Auth on and no token: the login form; else the page.
  try {
    const r = await fetch("/v1/auth/status", { cache: "no-store" });
    const s = r.ok ? await r.json() : {};
    if (s.enabled && !token()) { showLogin(""); return; }
  } catch (_) {}
  showMain();
}

start();
