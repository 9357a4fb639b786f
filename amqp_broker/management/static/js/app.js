// The dashboard's shell: login, navigation (#/page/args in the URL), the refresh timer of the
// page shown, messages to the user, and the /api/overview sampler behind the charts.

import { ApiError, clearLogin, get, login, onUnauthorized, saveLogin, api } from "./api.js";
import { button, clear, h } from "./dom.js";
import { pages } from "./pages.js";
import { adminPages } from "./admin.js";

const ROUTES = { ...pages, ...adminPages };
// [page, title, tags that may use it (none: any user the API lets in)], as RabbitMQ decides
const NAV = [
  ["overview", "Overview"], ["connections", "Connections"], ["channels", "Channels"],
  ["exchanges", "Exchanges"], ["queues", "Queues"], ["users", "Users", ["administrator"]],
  ["vhosts", "Virtual hosts"], ["policies", "Policies", ["administrator", "policymaker"]],
  ["definitions", "Definitions", ["administrator"]],
];
const SAMPLE_MS = 5000;
const KEEP_MS = 10 * 60 * 1000;

const root = document.getElementById("app");
const state = { user: null, overview: null, samples: [], timers: [], page: null, refreshMs: 5000 };

// --- messages ------------------------------------------------------------------------------

export function flash(text, kind = "ok") {
  const box = document.getElementById("flash");
  if (!box) return;
  // a refresh failing every few seconds (broker down, object deleted) says so once
  for (const old of box.querySelectorAll(`.flash.${kind} span`)) {
    if (old.textContent === text) return;
  }
  const item = h("div", { class: `flash ${kind}`, role: kind === "error" ? "alert" : "status",
                          dataset: { shown: String(Date.now()) } },
                 h("span", {}, text), button("×", () => item.remove(), { class: "dismiss",
                                                                          title: "Dismiss" }));
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
}

export function failed(err) {
  if (err instanceof ApiError && err.status === 401 && !state.user) return; // at the login form
  flash(err instanceof ApiError ? `${err.error}: ${err.message}` : String(err.message || err),
        "error");
}

// run an action from a button or a form: errors are shown, success too, and the page refreshes
export async function act(fn, done) {
  try {
    await fn();
    if (done) flash(done);
    refreshNow();
  } catch (err) {
    failed(err);
  }
}

// --- the overview sampler (shared by the overview page and the header) ---------------------

export function samples() {
  return state.samples;
}

export function latest() {
  return state.overview;
}

// the first sample asks for the last ten minutes too (RabbitMQ's `*_details.samples`), so
// the charts start full; later ones add one point each
const HISTORY = "?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5";

function history(o, now) {
  const byTime = new Map();
  for (const group of ["message_stats", "queue_totals"]) {
    for (const [key, value] of Object.entries(o[group] || {})) {
      if (!key.endsWith("_details") || !value || !Array.isArray(value.samples)) continue;
      for (const { sample: v, timestamp } of value.samples) {
        if (typeof v !== "number" || typeof timestamp !== "number") continue;
        const entry = byTime.get(timestamp) || { message_stats: {}, queue_totals: {} };
        entry[group][key.slice(0, -"_details".length)] = v;
        byTime.set(timestamp, entry);
      }
    }
  }
  const times = [...byTime.keys()].sort((a, b) => a - b);
  // the server's clock may differ from this one: its newest sample is now
  const shift = times.length ? now - times[times.length - 1] : 0;
  return times.slice(0, -1).map((t) => ({ t: t + shift, o: byTime.get(t) }));
}

async function sample() {
  try {
    const first = !state.samples.length;
    const o = await get("overview" + (first ? HISTORY : ""));
    state.overview = o;
    const now = Date.now();
    if (first) state.samples.push(...history(o, now));
    state.samples.push({ t: now, o });
    while (state.samples.length && state.samples[0].t < now - KEEP_MS) state.samples.shift();
    const product = document.getElementById("product");
    if (product) {
      product.textContent = [o.product_name, o.product_version].filter(Boolean).join(" ");
      product.title = o.cluster_name ? `cluster ${o.cluster_name}, node ${o.node}` : "";
    }
    for (const fn of sampleListeners) fn();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) console.warn("overview:", err);
  }
}
const sampleListeners = new Set();
export function onSample(fn) {
  sampleListeners.add(fn);
  return () => sampleListeners.delete(fn);
}

// --- login ---------------------------------------------------------------------------------

function stopTimers() {
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}

function showLogin(message) {
  stopTimers();
  if (state.page && state.page.stop) state.page.stop();
  state.page = null;
  state.user = null;
  state.overview = null;
  state.samples = [];
  const error = h("p", { class: "error", id: "login-error" }, message || "");
  const user = h("input", { name: "username", id: "login-user", autocomplete: "username",
                            required: true, autofocus: true });
  const password = h("input", { name: "password", id: "login-pass", type: "password",
                                autocomplete: "current-password" });
  const form = h("form", { id: "login", class: "login" },
    h("h1", {}, "amqp-broker"),
    h("label", {}, "Username", user),
    h("label", {}, "Password", password),
    h("button", { type: "submit", id: "login-submit" }, "Log in"),
    error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const me = await tryLogin(user.value, password.value);
      saveLogin(user.value, password.value);
      start(me);
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401
        ? `Login failed: ${err.message || "not authorised"}` : `Login failed: ${err.message}`;
    }
  });
  clear(root, form);
  user.focus();
}

async function tryLogin(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  const authorization = "Basic " + btoa(String.fromCharCode(...bytes));
  return api("GET", "whoami", undefined, { authorization });
}

function logout() {
  clearLogin();
  location.hash = "";
  showLogin("Logged out.");
}

// --- the shell -----------------------------------------------------------------------------

function start(me) {
  state.user = me;
  const mine = new Set(typeof me.tags === "string" ? me.tags.split(",") : me.tags || []);
  const nav = h("nav", {}, NAV.filter(([, , tags]) => !tags || tags.some((t) => mine.has(t)))
    .map(([id, text]) => h("a", { href: `#/${id}`, id: `nav-${id}` }, text)));
  const refresh = h("select", { id: "refresh", title: "Refresh the page every",
                                onchange: (e) => setRefresh(Number(e.target.value)) },
    [[2000, "every 2 s"], [5000, "every 5 s"], [10000, "every 10 s"], [30000, "every 30 s"],
     [0, "no refresh"]].map(([v, t]) => h("option", { value: v, selected: v === state.refreshMs },
                                             t)));
  const header = h("header", {},
    h("div", { class: "brand" }, h("strong", {}, "amqp-broker"),
      h("span", { id: "product", class: "muted" })),
    nav,
    h("div", { class: "who" }, refresh,
      h("span", { id: "whoami", title: `tags: ${[].concat(me.tags || []).join(", ")}` },
        me.name),
      button("Log out", logout, { id: "logout" })));
  clear(root, header, h("div", { id: "flash" }), h("main", { id: "main" }));
  stopTimers();
  state.samples = [];
  sample();
  state.timers.push(setInterval(sample, SAMPLE_MS));
  route();
}

function setRefresh(ms) {
  state.refreshMs = ms;
  sessionStorage.setItem("amqp-broker-ui.refresh", String(ms));
  if (state.page) schedule();
}

function schedule() {
  if (state.page.timer) clearInterval(state.page.timer);
  state.page.timer = null;
  if (state.refreshMs && state.page.refresh) {
    state.page.timer = setInterval(() => refreshNow(), state.refreshMs);
  }
}

export async function refreshNow() {
  const page = state.page;
  if (!page || !page.refresh) return;
  if (page.busy) {
    page.again = true; // an action finished during a refresh: show its effect too
    return;
  }
  page.busy = true;
  try {
    do {
      page.again = false;
      await page.refresh();
    } while (page.again && state.page === page);
  } catch (err) {
    failed(err);
  } finally {
    page.busy = false;
  }
}

export function go(hash) {
  location.hash = hash;
}

async function route() {
  if (!state.user) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter((p) => p !== "");
  const [name = "overview", ...args] = parts.map((p) => decodeURIComponent(p));
  const known = ROUTES[name] && args.length >= (ROUTES[name].args || 0);
  const page = known ? ROUTES[name] : ROUTES.overview;
  if (state.page) {
    if (state.page.timer) clearInterval(state.page.timer);
    if (state.page.stop) state.page.stop();
  }
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.id === `nav-${page.nav || (known ? name : "overview")}`);
  }
  const main = document.getElementById("main");
  clear(main);
  document.title = `${page.title} · amqp-broker`;
  const shown = { refresh: null, stop: null, timer: null, busy: false, again: false };
  state.page = shown;
  try {
    const made = page.render(main, args, { user: state.user }) || {};
    shown.refresh = made.refresh || null;
    shown.stop = made.stop || null;
  } catch (err) {
    failed(err);
  }
  if (state.page !== shown) return;
  await refreshNow();
  if (state.page === shown) schedule();
}

// --- start ---------------------------------------------------------------------------------

onUnauthorized((err) => {
  clearLogin();
  showLogin(`Logged out: ${err.message || "not authorised"}`);
});
window.addEventListener("hashchange", () => {
  // a page change clears older news, not what the action that moved here just said
  for (const f of document.querySelectorAll("#flash .flash:not(.error)")) {
    if (Date.now() - Number(f.dataset.shown) > 1000) f.remove();
  }
  route();
});
state.refreshMs = Number(sessionStorage.getItem("amqp-broker-ui.refresh") ?? 5000);

(async () => {
  const saved = login();
  if (!saved) return showLogin();
  try {
    const me = await api("GET", "whoami", undefined, { authorization: saved.authorization });
    start(me);
  } catch (err) {
    clearLogin();
    showLogin(err instanceof ApiError ? "" : `Cannot reach the broker: ${err.message}`);
  }
})();
