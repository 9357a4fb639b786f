// The admin pages: users and their permissions, virtual hosts, policies, and the definitions
// file (export as a download, import from an upload).

import { del, get, path, post, put } from "./api.js";
import { act, failed, flash } from "./app.js";
import { button, clear, field, h, json, num, parseJson, select, table, tags } from "./dom.js";

const section = (title, ...body) => h("section", {}, h("h2", {}, title), ...body);
const TAGS = ["administrator", "monitoring", "policymaker", "management", "impersonator"];

function submit(form, fn) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    fn(Object.fromEntries(new FormData(form)));
  });
  return form;
}

function fill(selectEl, names, keep) {
  const value = keep ? selectEl.value : "";
  selectEl.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
  if (names.includes(value)) selectEl.value = value;
}

// --- users and permissions ----------------------------------------------------------------

const users = {
  title: "Users",
  render(main, args, { user: me }) {
    const usersTable = table([
      { title: "Name", key: "name" }, { title: "Tags", key: (u) => tags(u.tags) },
      { title: "Password", key: (u) => (u.password_hash ? "set" : "none") },
    ], { id: "users", filter: true, empty: "No users.",
         actions: (u) => button("Delete", () => {
           if (!confirm(`Delete user ${u.name}?`)) return;
           act(() => del(`users/${path(u.name)}`), `User ${u.name} deleted.`);
         }, { class: "danger", disabled: u.name === me.name,
              title: u.name === me.name ? "You are logged in as this user" : "" }) });
    const tagInput = h("input", { name: "tags", placeholder: "administrator" });
    const addUser = submit(h("form", { class: "inline-form", id: "add-user" },
      field("Name", h("input", { name: "name", required: true, autocomplete: "off" })),
      field("Password", h("input", { name: "password", type: "password",
                                     autocomplete: "new-password" })),
      field("Tags", tagInput),
      h("span", { class: "tag-buttons" }, TAGS.map((t) => button(t, () => {
        const have = tagInput.value.split(",").map((x) => x.trim()).filter(Boolean);
        if (!have.includes(t)) tagInput.value = [...have, t].join(", ");
      }, { class: "small" }))),
      h("button", { type: "submit" }, "Add / update user")), (f) => {
      const body = { tags: f.tags.split(",").map((x) => x.trim()).filter(Boolean).join(",") };
      if (f.password) body.password = f.password;
      else body.password_hash = "";  // RabbitMQ: a user without password (no password login)
      act(() => put(`users/${path(f.name)}`, body), `User ${f.name} saved.`);
    });
    const permsTable = table([
      { title: "User", key: "user" }, { title: "Virtual host", key: "vhost" },
      { title: "Configure", key: "configure" }, { title: "Write", key: "write" },
      { title: "Read", key: "read" },
    ], { id: "permissions", rowKey: (p) => `${p.user}@${p.vhost}`, empty: "No permissions.",
         actions: (p) => button("Clear", () => act(
           () => del(`permissions/${path(p.vhost, p.user)}`),
           `Permissions of ${p.user} in ${p.vhost} cleared.`), { class: "danger" }) });
    const userSelect = h("select", { name: "user" });
    const vhostSelect = h("select", { name: "vhost" });
    const setPerms = submit(h("form", { class: "inline-form", id: "set-permission" },
      field("User", userSelect), field("Virtual host", vhostSelect),
      field("Configure", h("input", { name: "configure", value: ".*" })),
      field("Write", h("input", { name: "write", value: ".*" })),
      field("Read", h("input", { name: "read", value: ".*" })),
      h("button", { type: "submit" }, "Set permission")), (f) => {
      act(() => put(`permissions/${path(f.vhost, f.user)}`,
                    { configure: f.configure, write: f.write, read: f.read }),
          `Permissions of ${f.user} in ${f.vhost} set.`);
    });
    clear(main, h("h1", {}, "Users"), usersTable.el, section("Add or update a user", addUser),
          section("Permissions", permsTable.el, setPerms));
    return {
      async refresh() {
        const [u, p, v] = await Promise.all([get("users"), get("permissions"), get("vhosts")]);
        usersTable.update(u);
        permsTable.update(p);
        fill(userSelect, u.map((x) => x.name), true);
        fill(vhostSelect, v.map((x) => x.name), true);
      },
    };
  },
};

// --- virtual hosts -------------------------------------------------------------------------

const vhosts = {
  title: "Virtual hosts",
  render(main) {
    const t = table([
      { title: "Name", key: "name" }, { title: "Description", key: "description" },
      { title: "Tags", key: (v) => tags(v.tags) },
      { title: "Ready", key: "messages_ready", num: true, render: (v) => num(v.messages_ready) },
      { title: "Unacked", key: "messages_unacknowledged", num: true,
        render: (v) => num(v.messages_unacknowledged) },
      { title: "Total", key: "messages", num: true, render: (v) => num(v.messages) },
    ], { id: "vhosts", filter: true, empty: "No virtual hosts.",
         actions: (v) => button("Delete", () => {
           if (!confirm(`Delete virtual host ${v.name} and everything in it?`)) return;
           act(() => del(`vhosts/${path(v.name)}`), `Virtual host ${v.name} deleted.`);
         }, { class: "danger" }) });
    const form = submit(h("form", { class: "inline-form", id: "add-vhost" },
      field("Name", h("input", { name: "name", required: true })),
      field("Description", h("input", { name: "description" })),
      field("Tags", h("input", { name: "tags" })),
      h("button", { type: "submit" }, "Add virtual host")), (f) => {
      act(() => put(`vhosts/${path(f.name)}`, { description: f.description, tags: f.tags }),
          `Virtual host ${f.name} added.`);
    });
    clear(main, h("h1", {}, "Virtual hosts"), t.el, section("Add a virtual host", form));
    return { refresh: async () => t.update(await get("vhosts")) };
  },
};

// --- policies ------------------------------------------------------------------------------

const policies = {
  title: "Policies",
  render(main) {
    const t = table([
      { title: "Virtual host", key: "vhost" }, { title: "Name", key: "name" },
      { title: "Pattern", key: "pattern" }, { title: "Apply to", key: "apply-to" },
      { title: "Definition", key: (p) => json(p.definition) },
      { title: "Priority", key: "priority", num: true },
    ], { id: "policies", filter: true, rowKey: (p) => `${p.vhost}|${p.name}`,
         empty: "No policies.",
         actions: (p) => button("Delete", () => act(
           () => del(`policies/${path(p.vhost, p.name)}`), `Policy ${p.name} deleted.`),
           { class: "danger" }) });
    const vhostSelect = h("select", { name: "vhost" });
    const form = submit(h("form", { class: "stack-form", id: "add-policy" },
      field("Virtual host", vhostSelect),
      field("Name", h("input", { name: "name", required: true })),
      field("Pattern", h("input", { name: "pattern", required: true, placeholder: "^orders\\." })),
      field("Apply to", select("apply-to", [["all", "Exchanges and queues"], ["queues", "Queues"],
                                            ["exchanges", "Exchanges"]], "all")),
      field("Priority", h("input", { name: "priority", type: "number", value: "0" })),
      field("Definition (JSON)", h("textarea", { name: "definition", rows: 3,
                                                 placeholder: '{"max-length": 1000}' })),
      h("button", { type: "submit" }, "Add / update policy")), (f) => {
      act(async () => put(`policies/${path(f.vhost, f.name)}`, {
        pattern: f.pattern, "apply-to": f["apply-to"], priority: Number(f.priority) || 0,
        definition: parseJson(f.definition, "Definition") }), `Policy ${f.name} saved.`);
    });
    clear(main, h("h1", {}, "Policies"), t.el, section("Add or update a policy", form));
    return {
      async refresh() {
        const [p, v] = await Promise.all([get("policies"), get("vhosts")]);
        t.update(p);
        fill(vhostSelect, v.map((x) => x.name), true);
      },
    };
  },
};

// --- definitions ---------------------------------------------------------------------------

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

const definitions = {
  title: "Definitions",
  render(main) {
    const exportVhost = h("select", { name: "vhost", id: "export-vhost" });
    const importVhost = h("select", { name: "vhost", id: "import-vhost" });
    const exportForm = submit(h("form", { class: "inline-form", id: "export" },
      field("Virtual host", exportVhost),
      h("button", { type: "submit", id: "export-submit" }, "Download definitions")), async (f) => {
      try {
        const defs = await get(f.vhost ? `definitions/${path(f.vhost)}` : "definitions");
        const day = new Date().toISOString().slice(0, 10);
        const label = f.vhost ? `_${f.vhost.replace(/[^A-Za-z0-9_.-]+/g, "_")}` : "";
        download(`definitions${label}_${day}.json`, JSON.stringify(defs, null, 2));
        flash("Definitions downloaded.");
      } catch (err) {
        failed(err);
      }
    });
    const file = h("input", { type: "file", name: "file", accept: ".json,application/json",
                              id: "import-file", required: true });
    const importForm = h("form", { class: "inline-form", id: "import" },
      field("Definitions file", file), field("Virtual host", importVhost),
      h("button", { type: "submit", id: "import-submit" }, "Upload definitions"));
    importForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      const text = await chosen.text();
      try {
        JSON.parse(text);
      } catch {
        flash(`${chosen.name} is not JSON.`, "error");
        return;
      }
      const vhost = importVhost.value;
      act(() => post(vhost ? `definitions/${path(vhost)}` : "definitions", text),
          `Definitions imported from ${chosen.name}.`);
    });
    clear(main, h("h1", {}, "Definitions"),
          h("p", { class: "muted" }, "Users, virtual hosts, permissions, policies, queues, "
            + "exchanges and bindings, in RabbitMQ's definitions format."),
          section("Export", exportForm), section("Import", importForm));
    const fillBoth = async () => {
      const names = (await get("vhosts")).map((v) => v.name);
      for (const s of [exportVhost, importVhost]) {
        const value = s.value;
        s.replaceChildren(h("option", { value: "" }, "All virtual hosts"),
                          ...names.map((n) => h("option", { value: n }, n)));
        s.value = names.includes(value) ? value : "";
      }
    };
    fillBoth().catch(failed);
    return {};
  },
};

export const adminPages = { users, vhosts, policies, definitions };
