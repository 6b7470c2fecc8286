// The dashboard page: polls the JSON API and redraws; no page reloads.
// Every value from Redis is put in the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;
const TOTALS = [
  ["queued", "queued"], ["in_flight", "in flight"], ["seen", "seen"], ["done", "done"],
  ["items", "items"], ["dead", "dead (ever)"], ["dead_letters", "dead letters now"],
  ["requeued", "requeued"], ["pages_per_min", "pages/min"], ["items_per_min", "items/min"],
  ["live_nodes", "live nodes"], ["eta_seconds", "drains in (s)"],
];
const state = { config: { actions: false, token_required: false }, crawl: null, busy: false };

function token() { return sessionStorage.getItem("dashboardToken") || ""; }

function canAct() {
  return state.config.actions && (!state.config.token_required || token() !== "");
}

function takeToken() {
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem("dashboardToken", params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  state.crawl = params.get("crawl");
}

function fmt(value) {
  if (value === null || value === undefined) return "-";
  return typeof value === "number" ? value.toLocaleString("en-US") : String(value);
}

function cell(value, numeric) {
  const td = document.createElement("td");
  if (value instanceof Node) td.appendChild(value); else td.textContent = fmt(value);
  if (numeric || typeof value === "number") td.className = "num";
  return td;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    cells.forEach((c) => tr.appendChild(c instanceof HTMLElement && c.tagName === "TD" ? c : cell(c)));
    return tr;
  }));
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function act(path, body, what) {
  const response = await fetch(`/api/crawls/${encodeURIComponent(state.crawl)}/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Dashboard-Token": token() },
    body: JSON.stringify(body || {}),
  });
  const text = await response.text();
  say(response.ok ? `${what}: ${text}` : `${what} refused (${response.status}): ${text}`);
  refresh();
}

function say(text) { document.getElementById("message").textContent = text; }

function button(label, onClick, cls) {
  const b = document.createElement("button");
  b.textContent = label;
  b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

function renderCrawls(crawls) {
  const select = document.getElementById("crawl-select");
  const names = crawls.map((c) => c.crawl);
  if (!state.crawl || !names.includes(state.crawl)) state.crawl = names[0] || null;
  if ([...select.options].map((o) => o.value).join() !== names.join()) {
    select.replaceChildren(...names.map((n) => new Option(n, n)));
  }
  select.value = state.crawl || "";
  fillTable("crawls", crawls.map((c) => [
    c.crawl, c.queued, c.in_flight, c.done, c.items, c.dead, c.pages_per_min, c.live_nodes,
    c.paused ? "paused" : (c.closed_by ? `closed (${c.closed_by})` : (c.live_nodes ? "running" : "idle")),
  ]));
}

function renderTotals(s) {
  document.getElementById("crawl-name").textContent = s.crawl;
  document.getElementById("paused-badge").hidden = !s.paused;
  const closed = document.getElementById("closed-badge");
  closed.hidden = !s.closed_by;
  closed.textContent = s.closed_by ? `CLOSED: ${s.closed_by}` : "";
  const box = document.getElementById("totals");
  box.replaceChildren(...TOTALS.map(([field, label]) => {
    const div = document.createElement("div");
    div.className = "total";
    div.dataset.field = field;
    div.dataset.value = JSON.stringify(s[field]);
    const value = document.createElement("div");
    value.className = "value";
    value.textContent = fmt(s[field]);
    const name = document.createElement("div");
    name.className = "label";
    name.textContent = label;
    div.append(value, name);
    return div;
  }));
  const share = s.seen ? Math.min(100, (100 * (s.done + s.dead)) / s.seen) : 0;
  document.getElementById("progress-bar").style.width = `${share}%`;
}

function tokenForm() {
  const input = document.createElement("input");
  input.type = "password";
  input.placeholder = "dashboard token";
  input.id = "token-input";
  const use = button("Use token", () => {
    sessionStorage.setItem("dashboardToken", input.value);
    say("");
    refresh();
  }, "use-token");
  return [input, use];
}

function renderActions(s) {
  const box = document.getElementById("actions");
  if (!state.config.actions) { box.replaceChildren(); return; }
  if (state.config.token_required && !token()) {
    if (!document.getElementById("token-input")) box.replaceChildren(...tokenForm());
    return;
  }
  // The button is replaced only when the crawl's state changes: a button
  // replaced at every poll could swallow a click made at that moment.
  const kind = s.paused ? "resume" : "pause";
  if (box.children.length === 1 && box.firstElementChild.className === kind) return;
  const b = s.paused
    ? button("Resume", () => act("resume", {}, "resume"), "resume")
    : button("Pause", () => act("pause", {}, "pause"), "pause");
  box.replaceChildren(b);
}

function renderNodes(nodes) {
  fillTable("nodes", nodes.map((n) => {
    const st = cell(n.state);
    st.className = `state-${n.state}`;
    const age = n.heartbeat_age_s === null ? null : `${n.heartbeat_age_s} s`;
    return [n.node, n.host, n.pid === null ? null : String(n.pid), st, age, n.pages, n.items, n.pages_per_min, n.items_per_min, n.held];
  }));
}

function until(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  return `${new Date(Date.now() + seconds * 1000).toLocaleTimeString()} (in ${seconds} s)`;
}

function renderDomains(d) {
  document.getElementById("domains-note").textContent =
    `Queued counts read the park lists and the first ${d.sample_limit} queued requests ` +
    `(${d.queue_sampled} read).`;
  fillTable("domains", d.top.map((r) => [
    r.domain, r.queued, r.in_flight, until(r.backoff_until_in_s), until(r.throttled_until_in_s), r.robots,
  ]));
}

function renderDead(groups) {
  // Rebuilt only when the letters change, so a Requeue button stays put
  // (and clickable) from one poll to the next.
  const body = document.querySelector("#dead tbody");
  const key = JSON.stringify([canAct(), groups]);
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  fillTable("dead", groups.map((g) => {
    const examples = g.examples.map((e) => e.url).join("\n");
    const pre = document.createElement("pre");
    pre.textContent = examples;
    const requeue = canAct()
      ? button("Requeue", () => {
        if (confirm(`Requeue the dead letters whose reason contains:\n${g.reason}`)) {
          act("requeue", { reason: g.reason }, "requeue");
        }
      }, "requeue")
      : "";
    const reason = cell(g.reason);
    reason.className = "reason";
    return [g.count, reason, pre, requeue];
  }));
}

const LAYOUT = { margin: { t: 30, r: 10, b: 40, l: 50 }, legend: { orientation: "h" } };

function chart(id, title, traces) {
  const layout = { ...LAYOUT, title: { text: title, font: { size: 13 } } };
  Plotly.react(id, traces, layout, { displayModeBar: false, responsive: true });
}

function line(name, times, values) {
  return { x: times.map((t) => new Date(t * 1000)), y: values, name, type: "scatter", mode: "lines" };
}

function renderCharts(series) {
  const total = series.total;
  const perNode = (field) => Object.entries(series.nodes).map(([n, s]) => line(n, s.t, s[field]));
  chart("chart-pages", "pages/min", [line("total", total.t, total.pages_per_min), ...perNode("pages_per_min")]);
  chart("chart-items", "items/min", [line("total", total.t, total.items_per_min), ...perNode("items_per_min")]);
  chart("chart-frontier", "frontier size (queued)", [line("queued", total.t, total.queued)]);
  chart("chart-dead", "dead letters (made so far)", [line("dead", total.t, total.dead)]);
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    renderCrawls((await getJSON("/api/crawls")).crawls);
    if (state.crawl) {
      const d = await getJSON(`/api/crawls/${encodeURIComponent(state.crawl)}`);
      renderTotals(d.status);
      renderActions(d.status);
      renderNodes(d.status.nodes);
      renderDomains(d.domains);
      renderDead(d.dead_letters);
      renderCharts(d.series);
    }
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (err) {
    say(String(err));
  } finally {
    state.busy = false;
  }
}

async function start() {
  takeToken();
  state.config = await getJSON("/api/config");
  if (state.config.actions && state.config.token_required && !token()) {
    say("Actions need the dashboard's token: open this page with ?token=TOKEN.");
  }
  document.getElementById("crawl-select").addEventListener("change", (e) => {
    state.crawl = e.target.value;
    refresh();
  });
  await refresh();
  setInterval(refresh, POLL_MS);
}

start();
