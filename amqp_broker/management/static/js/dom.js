// DOM helpers: elements built with h() (text is always text, never parsed as HTML), number
// formats, sortable and filterable tables, and small forms.

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

// columns: [{title, key (sort/value field or function), render (row -> node|string), num}]
// options: {id, rowKey (row -> string), filter (true: a name/regex box and a vhost menu),
//           empty (text), actions (row -> node)}
export function table(columns, options = {}) {
  const state = { sort: options.sort || null, reverse: false, text: "", regex: false,
                  vhost: "", rows: [] };
  const value = (col, row) => (typeof col.key === "function" ? col.key(row) : pick(row, col.key));
  const tbody = h("tbody");
  const head = h("tr");
  const info = h("span", { class: "muted count" });
  const vhostMenu = h("select", { class: "vhost-filter", title: "Virtual host",
                                  onchange: (e) => { state.vhost = e.target.value; draw(); } });
  const allCols = options.actions ? [...columns, { title: "", actions: true }] : columns;
  for (const col of allCols) {
    const th = h("th", { class: col.num ? "num" : "" }, col.title);
    if (col.key) {
      th.classList.add("sortable");
      th.addEventListener("click", () => {
        state.reverse = state.sort === col.title ? !state.reverse : false;
        state.sort = col.title;
        draw();
      });
    }
    head.append(th);
  }
  const filterBar = options.filter
    ? h("div", { class: "filter" },
        h("input", { type: "search", placeholder: "Filter by name", class: "name-filter",
                     oninput: (e) => { state.text = e.target.value; draw(); },
                     onchange: (e) => { state.text = e.target.value; draw(); } }),
        h("label", {}, h("input", { type: "checkbox", class: "regex-filter",
                                    onchange: (e) => { state.regex = e.target.checked; draw(); } }),
          " regex"),
        vhostMenu, info)
    : null;
  const tableEl = h("table", { class: "list", id: options.id }, h("thead", {}, head), tbody);
  const el = h("div", { class: "table-wrap" }, filterBar, tableEl);

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

  function draw() {
    let rows = state.rows.filter(matches);
    const col = columns.find((c) => c.title === state.sort);
    if (col) {
      rows = [...rows].sort((a, b) => {
        const x = value(col, a);
        const y = value(col, b);
        let r;
        if (typeof x === "number" || typeof y === "number") r = (x ?? -1) - (y ?? -1);
        else r = String(x ?? "").localeCompare(String(y ?? ""));
        return state.reverse ? -r : r;
      });
    }
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
    info.textContent = `${rows.length} of ${state.rows.length}`;
  }

  function update(rows) {
    state.rows = rows || [];
    if (options.filter) {
      const vhosts = [...new Set(state.rows.map((r) => r.vhost).filter((v) => v !== undefined))];
      const have = [...vhostMenu.options].map((o) => o.value).slice(1).join("\n");
      if (have !== vhosts.sort().join("\n")) {
        vhostMenu.replaceChildren(h("option", { value: "" }, "All vhosts"),
                                  ...vhosts.map((v) => h("option", { value: v }, v)));
        vhostMenu.value = vhosts.includes(state.vhost) ? state.vhost : "";
        state.vhost = vhostMenu.value;
      }
      vhostMenu.hidden = vhosts.length === 0;
    }
    draw();
  }

  return { el, update };
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
