// DOM helpers: elements built with h() (text is always text, never parsed as HTML), number
// formats, sortable and filterable tables, and small forms.

import { get, path } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// --- formats -------------------------------------------------------------------------------

export function num(n) {
  if (n === undefined || n === null || n === "") return "";
  return Number(n).toLocaleString("en-US");
}

export function rate(n) {
  if (n === undefined || n === null) return "";
  const v = Number(n);
  return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + "/s";
}

export function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i ? v.toFixed(1) : v.toFixed(0)) + " " + units[i];
}

export function json(v) {
  if (v === undefined || v === null) return "";
  if (typeof v === "object" && Object.keys(v).length === 0) return "";
  return JSON.stringify(v);
}

// a nested field ("message_stats.publish_details.rate"), undefined when absent
export function pick(obj, dotted) {
  let v = obj;
  for (const k of dotted.split(".")) {
    if (v === undefined || v === null) return undefined;
    v = v[k];
  }
  return v;
}

export const statRate = (obj, stat) => pick(obj, `message_stats.${stat}_details.rate`);

export function tags(t) {
  if (Array.isArray(t)) return t.join(", ");
  return t || "";
}

// --- tables --------------------------------------------------------------------------------

const PAGE_SIZES = [20, 100, 500];

// columns: [{title, key (value field or function), sort (the API's sort field, when key is
//            a function), render (row -> node|string), num, id (data-col of the cells)}]
// options: {id, rowKey (row -> string), filter (a name/regex box and a vhost menu),
//           empty (text), actions (row -> node), sort (title sorted by at first),
//           paged (an API list, e.g. "queues": filtered, sorted and paged by the broker, so
//                  a broker with thousands of queues sends one page; refresh() loads it),
//           onError (err -> void, for loads the table starts itself)}
// Without paged, update(rows) shows a list the page fetched, filtered and sorted here.
export function table(columns, options = {}) {
  const paged = options.paged || null;
  const state = { sort: paged ? null : options.sort || null, reverse: false, text: "",
                  regex: false, vhost: "", rows: [], page: 1, pageSize: 100, pages: 1,
                  filtered: 0, total: 0 };
  const value = (col, row) => (typeof col.key === "function" ? col.key(row) : pick(row, col.key));
  const sortField = (col) => col.sort || (typeof col.key === "string" ? col.key : null);
  const tbody = h("tbody");
  const head = h("tr");
  const info = h("span", { class: "muted count" });
  const changed = () => {
    if (!paged) return draw();
    state.page = 1;
    return reload();
  };
  const vhostMenu = h("select", { class: "vhost-filter", title: "Virtual host",
                                  onchange: (e) => { state.vhost = e.target.value; changed(); } });
  const allCols = options.actions ? [...columns, { title: "", actions: true }] : columns;
  for (const col of allCols) {
    const th = h("th", { class: col.num ? "num" : "" }, col.title);
    if (paged ? sortField(col) : col.key) {
      th.classList.add("sortable");
      th.addEventListener("click", () => {
        state.reverse = state.sort === col.title ? !state.reverse : false;
        state.sort = col.title;
        changed();
      });
    }
    head.append(th);
  }
  let typing = null;
  const onText = (e) => {
    state.text = e.target.value;
    clearTimeout(typing);
    typing = setTimeout(changed, paged ? 300 : 0);
  };
  const filterBar = options.filter
    ? h("div", { class: "filter" },
        h("input", { type: "search", placeholder: "Filter by name", class: "name-filter",
                     oninput: onText, onchange: onText }),
        h("label", {}, h("input", { type: "checkbox", class: "regex-filter",
                                    onchange: (e) => { state.regex = e.target.checked; changed(); } }),
          " regex"),
        vhostMenu, info)
    : null;
  const pageInfo = h("span", { class: "muted" });
  const prev = h("button", { type: "button", class: "small prev-page", title: "Previous page",
                             onclick: () => { state.page -= 1; reload(); } }, "‹");
  const next = h("button", { type: "button", class: "small next-page", title: "Next page",
                             onclick: () => { state.page += 1; reload(); } }, "›");
  const sizeMenu = h("select", { class: "page-size", title: "Rows per page",
                                 onchange: (e) => { state.pageSize = Number(e.target.value);
                                                    changed(); } },
                     PAGE_SIZES.map((n) => h("option", { value: n, selected: n === 100 },
                                             `${n} per page`)));
  const pager = paged ? h("div", { class: "pager" }, prev, pageInfo, next, sizeMenu) : null;
  const tableEl = h("table", { class: "list", id: options.id }, h("thead", {}, head), tbody);
  const el = h("div", { class: "table-wrap" }, filterBar, tableEl, pager);

  function matches(row) {
    if (state.vhost && row.vhost !== state.vhost) return false;
    if (!state.text) return true;
    const name = String(row.name ?? "");
    if (state.regex) {
      try {
        return new RegExp(state.text).test(name);
      } catch {
        return false;
      }
    }
    return name.toLowerCase().includes(state.text.toLowerCase());
  }

  function sorted(rows) {
    const col = columns.find((c) => c.title === state.sort);
    if (!col || paged) return rows;
    return [...rows].sort((a, b) => {
      const x = value(col, a);
      const y = value(col, b);
      let r;
      if (typeof x === "number" || typeof y === "number") r = (x ?? -1) - (y ?? -1);
      else r = String(x ?? "").localeCompare(String(y ?? ""));
      return state.reverse ? -r : r;
    });
  }

  function draw() {
    const rows = sorted(paged ? state.rows : state.rows.filter(matches));
    for (const th of head.children) {
      th.classList.toggle("sorted", th.textContent === state.sort && !state.reverse);
      th.classList.toggle("sorted-reverse", th.textContent === state.sort && state.reverse);
    }
    const trs = rows.map((row) => {
      const key = options.rowKey ? options.rowKey(row) : row.name;
      const tr = h("tr", { dataset: { name: key ?? "" } });
      for (const c of columns) {
        const v = c.render ? c.render(row) : value(c, row);
        tr.append(h("td", { class: c.num ? "num" : "", dataset: { col: c.id || c.title } },
                    v instanceof Node ? v : v === undefined || v === null ? "" : String(v)));
      }
      if (options.actions) tr.append(h("td", { class: "actions" }, options.actions(row)));
      return tr;
    });
    if (!trs.length) {
      trs.push(h("tr", { class: "empty" },
                 h("td", { colspan: allCols.length }, options.empty || "Nothing here.")));
    }
    tbody.replaceChildren(...trs);
    info.textContent = paged ? `${state.filtered} of ${state.total}`
                             : `${rows.length} of ${state.rows.length}`;
    if (pager) {
      pageInfo.textContent = `page ${state.page} of ${state.pages}`;
      prev.disabled = state.page <= 1;
      next.disabled = state.page >= state.pages;
      pager.hidden = state.pages <= 1 && state.pageSize === 100;
    }
  }

  function setVhosts(vhosts) {
    const have = [...vhostMenu.options].map((o) => o.value).slice(1).join("\n");
    if (have !== [...vhosts].sort().join("\n")) {
      vhostMenu.replaceChildren(h("option", { value: "" }, "All vhosts"),
                                ...[...vhosts].sort().map((v) => h("option", { value: v }, v)));
      vhostMenu.value = vhosts.includes(state.vhost) ? state.vhost : "";
      state.vhost = vhostMenu.value;
    }
    vhostMenu.hidden = vhosts.length === 0;
  }

  function update(rows) {
    state.rows = rows || [];
    if (options.filter) {
      setVhosts([...new Set(state.rows.map((r) => r.vhost).filter((v) => v !== undefined))]);
    }
    draw();
  }

  // paged: the query RabbitMQ's own UI sends
  function query() {
    const col = columns.find((c) => c.title === state.sort);
    const params = new URLSearchParams({ page: state.page, page_size: state.pageSize,
                                         name: state.text, use_regex: state.regex,
                                         pagination: true });
    if (col && sortField(col)) {
      params.set("sort", sortField(col));
      params.set("sort_reverse", state.reverse);
    }
    return `${paged}${state.vhost ? "/" + path(state.vhost) : ""}?${params}`;
  }

  async function refresh() {
    if (options.filter) {
      get("vhosts?columns=name").then((v) => setVhosts(v.map((x) => x.name)), () => {});
    }
    let data;
    try {
      data = await get(query());
    } catch (err) {
      // a bad regex, or the page gone because the list shrank
      if (err.status !== 400) throw err;
      if (state.page > 1) {
        state.page = 1;
        data = await get(query());
      } else if (state.text) {
        state.rows = [];
        state.filtered = 0;
        draw();
        info.textContent = `filter: ${err.message}`;
        return;
      } else {
        throw err;
      }
    }
    state.rows = data.items || [];
    state.page = data.page || 1;
    state.pages = Math.max(1, data.page_count || 1);
    state.filtered = data.filtered_count ?? state.rows.length;
    state.total = data.total_count ?? state.rows.length;
    draw();
  }

  function reload() {
    refresh().catch((err) => (options.onError ? options.onError(err) : console.warn(err)));
  }

  return { el, update, refresh };
}

// --- forms ---------------------------------------------------------------------------------

export function field(label, input) {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

export function select(name, choices, value) {
  return h("select", { name },
           choices.map((c) => {
             const [v, text] = Array.isArray(c) ? c : [c, c];
             return h("option", { value: v, selected: v === value }, text);
           }));
}

// a JSON object typed into a textarea; "" is {}
export function parseJson(text, what) {
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text);
    if (v && typeof v === "object" && !Array.isArray(v)) return v;
  } catch {
    // falls through to the error below
  }
  throw new Error(`${what}: not a JSON object`);
}

export function button(text, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, text);
}
