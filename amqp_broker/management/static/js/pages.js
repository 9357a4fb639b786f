// The pages about traffic: overview, connections, channels, exchanges, queues, and one
// exchange's or queue's page. Each page is {title, render(main, args) -> {refresh, stop}}.

import { del, get, path, post, put } from "./api.js";
import { act, failed, go, latest, onSample, samples } from "./app.js";
import { lineChart } from "./chart.js";
import {
  button, bytes, clear, field, h, json, num, parseJson, pick, rate, select, statRate, table,
} from "./dom.js";

const RATES = [
  ["publish", "Publish"], ["confirm", "Publisher confirm"], ["deliver_get", "Deliver / get"],
  ["ack", "Consumer ack"], ["redeliver", "Redelivered"], ["return_unroutable", "Unroutable (return)"],
  ["drop_unroutable", "Unroutable (drop)"],
];
const QUEUED = [["messages_ready", "Ready"], ["messages_unacknowledged", "Unacked"],
                ["messages", "Total"]];

const link = (hash, text) => h("a", { href: hash }, text);
const queueHash = (q) => `#/queue/${path(q.vhost, q.name)}`;
const exchangeHash = (x) => `#/exchange/${path(x.vhost, x.name || "amq.default")}`;
const section = (title, ...body) => h("section", {}, h("h2", {}, title), ...body);

// --- overview ------------------------------------------------------------------------------

// rates from successive counters of the sampled /api/overview (a broker restart resets them:
// never negative)
function rateSeries(list, stat) {
  const points = [];
  for (let i = 1; i < list.length; i++) {
    const a = pick(list[i - 1].o, `message_stats.${stat}`);
    const b = pick(list[i].o, `message_stats.${stat}`);
    if (typeof a !== "number" || typeof b !== "number") continue;
    const dt = (list[i].t - list[i - 1].t) / 1000;
    if (dt > 0) points.push([list[i].t, Math.max(0, (b - a) / dt)]);
  }
  return points;
}

function legend(names, values, fmt) {
  return h("ul", { class: "legend" }, names.map((n, i) =>
    h("li", {}, h("span", { class: `swatch series-${i}` }), n, " ",
      h("strong", {}, values[i] === undefined ? "–" : fmt(values[i])))));
}

const overview = {
  title: "Overview",
  render(main) {
    const totals = h("div", { class: "totals", id: "totals" });
    const queued = h("div", { class: "chart-box", id: "chart-queued" });
    const rates = h("div", { class: "chart-box", id: "chart-rates" });
    const listeners = table([
      { title: "Protocol", key: "protocol" }, { title: "Address", key: "ip_address" },
      { title: "Port", key: "port", num: true },
    ], { rowKey: (l) => `${l.protocol}:${l.port}`, id: "listeners" });
    const node = h("dl", { class: "facts", id: "node" });
    clear(main, h("h1", {}, "Overview"), totals,
          section("Queued messages (last ten minutes)", queued),
          section("Message rates (last ten minutes)", rates),
          h("div", { class: "columns" }, section("Node", node), section("Listeners", listeners.el)));

    function draw() {
      const list = samples();
      const o = latest();
      if (!list.length || !o) return;
      const ot = o.object_totals || {};
      const qt = o.queue_totals || {};
      clear(totals, [["Connections", ot.connections, "#/connections"],
                     ["Channels", ot.channels, "#/channels"],
                     ["Exchanges", ot.exchanges, "#/exchanges"],
                     ["Queues", ot.queues, "#/queues"], ["Consumers", ot.consumers, "#/queues"],
                     ["Ready", qt.messages_ready, "#/queues"],
                     ["Unacked", qt.messages_unacknowledged, "#/queues"],
                     ["Messages", qt.messages, "#/queues"]].map(([t, v, href]) =>
        h("a", { class: "total", href, dataset: { total: t } },
          h("span", { class: "value" }, num(v ?? 0)), h("span", {}, t))));
      const depth = QUEUED.map(([k]) => list.filter((s) => typeof pick(s.o, `queue_totals.${k}`)
                                                         === "number")
        .map((s) => [s.t, pick(s.o, `queue_totals.${k}`)]));
      // the total is dashed: with nothing unacked it lies on the ready line
      clear(queued, lineChart(depth.map((points, i) => ({ name: QUEUED[i][1], points,
                                                          dashed: QUEUED[i][0] === "messages" })),
                              { title: "Queued messages" }),
            legend(QUEUED.map((q) => q[1]), QUEUED.map(([k]) => pick(qt, k)), num));
      const present = RATES.filter(([k]) => typeof pick(o, `message_stats.${k}`) === "number");
      const series = present.map(([k, n]) => ({ name: n, points: rateSeries(list, k) }));
      clear(rates, series.length
        ? [lineChart(series, { title: "Message rates", unit: "/s" }),
           legend(present.map((p) => p[1]),
                  series.map((s) => (s.points.length ? s.points[s.points.length - 1][1]
                                                     : undefined)), rate)]
        : h("p", { class: "muted" }, "No messages yet."));
      clear(node, [["Product", `${o.product_name || ""} ${o.product_version || ""}`],
                   ["Management version", o.management_version], ["Node", o.node],
                   ["Cluster", o.cluster_name], ["Rates mode", o.rates_mode]]
        .filter(([, v]) => v).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      listeners.update(o.listeners || []);
    }
    draw();
    return { stop: onSample(draw) };
  },
};

// --- connections and channels --------------------------------------------------------------

function closeConnection(c) {
  if (!confirm(`Close connection ${c.name}?`)) return;
  act(() => del(`connections/${path(c.name)}`, { "X-Reason": "Closed via management plugin" }),
      `Connection ${c.name} closed.`);
}

const connections = {
  title: "Connections",
  render(main) {
    const t = table([
      { title: "Name", key: "name" }, { title: "Virtual host", key: "vhost" },
      { title: "User", key: "user" },
      { title: "Client", sort: "client_properties.product",
        key: (c) => [pick(c, "client_properties.product"),
                                      pick(c, "client_properties.version")]
        .filter(Boolean).join(" ") },
      { title: "Protocol", key: "protocol" },
      { title: "TLS", key: (c) => (c.ssl ? "yes" : ""), sort: "ssl" },
      { title: "State", key: "state" }, { title: "Channels", key: "channels", num: true },
      { title: "From client", key: "recv_oct_details.rate", num: true,
        render: (c) => bytes(pick(c, "recv_oct_details.rate")) + "/s" },
      { title: "To client", key: "send_oct_details.rate", num: true,
        render: (c) => bytes(pick(c, "send_oct_details.rate")) + "/s" },
    ], { id: "connections", filter: true, paged: "connections", onError: failed,
         empty: "No connections.",
         actions: (c) => button("Close", () => closeConnection(c), { class: "danger" }) });
    clear(main, h("h1", {}, "Connections"), t.el);
    return { refresh: t.refresh };
  },
};

const channels = {
  title: "Channels",
  render(main) {
    const t = table([
      { title: "Channel", key: "name" },
      { title: "Connection", key: "connection_details.name" },
      { title: "Virtual host", key: "vhost" }, { title: "User", key: "user" },
      { title: "Mode", key: (c) => [c.confirm ? "confirm" : "", c.transactional ? "tx" : ""]
        .filter(Boolean).join(" ") },
      { title: "State", key: "state" },
      { title: "Prefetch", key: "prefetch_count", num: true },
      { title: "Unacked", key: "messages_unacknowledged", num: true },
      { title: "Consumers", key: "consumer_count", num: true },
      { title: "Publish", key: (c) => statRate(c, "publish"), num: true,
        sort: "message_stats.publish_details.rate",
        render: (c) => rate(statRate(c, "publish") ?? 0) },
      { title: "Deliver / get", key: (c) => statRate(c, "deliver_get"), num: true,
        sort: "message_stats.deliver_get_details.rate",
        render: (c) => rate(statRate(c, "deliver_get") ?? 0) },
      { title: "Ack", key: (c) => statRate(c, "ack"), num: true,
        sort: "message_stats.ack_details.rate",
        render: (c) => rate(statRate(c, "ack") ?? 0) },
    ], { id: "channels", filter: true, paged: "channels", onError: failed,
         empty: "No channels." });
    clear(main, h("h1", {}, "Channels"), t.el);
    return { refresh: t.refresh };
  },
};

// --- exchanges -----------------------------------------------------------------------------

const features = (o) => [o.durable ? "D" : "", o.auto_delete ? "AD" : "", o.internal ? "I" : "",
                         o.exclusive ? "Excl" : "", Object.keys(o.arguments || {}).length
                           ? "Args" : ""].filter(Boolean).join(" ");

async function vhostNames() {
  return (await get("vhosts")).map((v) => v.name);
}

function vhostSelect(name = "vhost") {
  const s = h("select", { name }, h("option", { value: "/" }, "/"));
  vhostNames().then((names) => {
    s.replaceChildren(...names.map((n) => h("option", { value: n, selected: n === "/" }, n)));
  }).catch(failed);
  return s;
}

const exchanges = {
  title: "Exchanges",
  render(main) {
    const t = table([
      { title: "Name", key: (x) => x.name || "(AMQP default)", sort: "name",
        render: (x) => link(exchangeHash(x), x.name || "(AMQP default)") },
      { title: "Virtual host", key: "vhost" }, { title: "Type", key: "type" },
      { title: "Features", key: features },
      { title: "Rate in", key: (x) => statRate(x, "publish_in"), num: true,
        sort: "message_stats.publish_in_details.rate",
        render: (x) => rate(statRate(x, "publish_in") ?? 0) },
      { title: "Rate out", key: (x) => statRate(x, "publish_out"), num: true,
        sort: "message_stats.publish_out_details.rate",
        render: (x) => rate(statRate(x, "publish_out") ?? 0) },
    ], { id: "exchanges", filter: true, paged: "exchanges", onError: failed,
         rowKey: (x) => x.name });
    const form = h("form", { class: "inline-form", id: "add-exchange" },
      field("Virtual host", vhostSelect()),
      field("Name", h("input", { name: "name", required: true })),
      field("Type", select("type", ["direct", "fanout", "topic", "headers"], "direct")),
      field("Durable", select("durable", [["true", "yes"], ["false", "no"]], "true")),
      field("Auto delete", select("auto_delete", [["false", "no"], ["true", "yes"]], "false")),
      field("Internal", select("internal", [["false", "no"], ["true", "yes"]], "false")),
      field("Arguments (JSON)", h("input", { name: "arguments", placeholder: "{}" })),
      h("button", { type: "submit" }, "Add exchange"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      act(async () => put(`exchanges/${path(f.vhost, f.name)}`, {
        type: f.type, durable: f.durable === "true", auto_delete: f.auto_delete === "true",
        internal: f.internal === "true", arguments: parseJson(f.arguments, "Arguments"),
      }), `Exchange ${f.name} declared.`);
    });
    clear(main, h("h1", {}, "Exchanges"), t.el, section("Add an exchange", form));
    return { refresh: t.refresh };
  },
};

// bindings of one exchange or queue, and the form adding one
function bindingsTable(id, { showSource = true, showDestination = true } = {}) {
  const cols = [];
  if (showSource) {
    cols.push({ title: "From", key: "source",
                render: (b) => (b.source ? link(`#/exchange/${path(b.vhost, b.source)}`, b.source)
                                         : "(AMQP default)") });
  }
  if (showDestination) {
    cols.push({ title: "To", key: "destination", render: (b) => link(
      b.destination_type === "queue" ? `#/queue/${path(b.vhost, b.destination)}`
                                     : `#/exchange/${path(b.vhost, b.destination)}`,
      b.destination) });
    cols.push({ title: "Type", key: "destination_type" });
  }
  cols.push({ title: "Routing key", key: "routing_key" },
            { title: "Arguments", key: (b) => json(b.arguments) });
  return table(cols, {
    id, rowKey: (b) => `${b.source}|${b.destination_type}|${b.destination}|${b.properties_key}`,
    empty: "No bindings.",
    actions: (b) => (b.source === "" ? null : button("Unbind", () => act(
      () => del(`bindings/${path(b.vhost)}/e/${path(b.source)}/${b.destination_type === "queue"
        ? "q" : "e"}/${path(b.destination, b.properties_key)}`), "Binding removed."))),
  });
}

function bindForm(vhost, { source, destination }) {
  const other = h("input", { name: "other", required: true });
  const kind = select("kind", [["q", "queue"], ["e", "exchange"]], "q");
  const form = h("form", { class: "inline-form", id: "add-binding" },
    source ? field("To", kind) : null,
    field(source ? "Name" : "From exchange", other),
    field("Routing key", h("input", { name: "routing_key" })),
    field("Arguments (JSON)", h("input", { name: "arguments", placeholder: "{}" })),
    h("button", { type: "submit" }, "Bind"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    const url = source ? `bindings/${path(vhost)}/e/${path(source)}/${f.kind}/${path(f.other)}`
                       : `bindings/${path(vhost)}/e/${path(f.other)}/q/${path(destination)}`;
    act(async () => post(url, { routing_key: f.routing_key,
                                arguments: parseJson(f.arguments, "Arguments") }), "Bound.");
  });
  return form;
}

function publishForm(vhost, exchange, routingKey) {
  const result = h("p", { id: "publish-result", class: "result", "aria-live": "polite" });
  const form = h("form", { class: "stack-form", id: "publish" },
    routingKey === undefined ? field("Routing key", h("input", { name: "routing_key" })) : null,
    field("Delivery mode", select("delivery_mode", [["1", "1 – non-persistent"],
                                                    ["2", "2 – persistent"]], "1")),
    field("Headers (JSON)", h("input", { name: "headers", placeholder: '{"x-key": "value"}' })),
    field("Properties (JSON)", h("input", { name: "properties",
                                            placeholder: '{"content_type": "text/plain"}' })),
    field("Payload", h("textarea", { name: "payload", id: "publish-payload", rows: 4 })),
    h("button", { type: "submit", id: "publish-submit" }, "Publish message"), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    result.textContent = "";
    try {
      const properties = { ...parseJson(f.properties || "", "Properties"),
                           delivery_mode: Number(f.delivery_mode) };
      const headers = parseJson(f.headers || "", "Headers");
      if (Object.keys(headers).length) properties.headers = headers;
      const r = await post(`exchanges/${path(vhost, exchange || "amq.default")}/publish`, {
        properties, routing_key: routingKey ?? f.routing_key, payload: f.payload,
        payload_encoding: "string" });
      result.textContent = r && r.routed === false ? "Message published, but not routed."
                                                   : "Message published.";
    } catch (err) {
      failed(err);
    }
  });
  return form;
}

function facts(pairs, cls = "facts") {
  return h("dl", { class: cls }, pairs.filter(([, v]) => v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } },
                                        v instanceof Node ? v : String(v))]));
}

const exchange = {
  title: "Exchange",
  nav: "exchanges",
  args: 2, // vhost, name
  render(main, [vhost, name]) {
    const info = h("section", { id: "exchange-info" });
    const bindings = bindingsTable("exchange-bindings", { showSource: false });
    const deleteButton = button("Delete this exchange", () => {
      if (!confirm(`Delete exchange ${name}?`)) return;
      act(async () => {
        await del(`exchanges/${path(vhost, name)}`);
        go("#/exchanges");
      }, `Exchange ${name} deleted.`);
    }, { class: "danger", id: "delete-exchange" });
    const builtin = name === "amq.default" || name.startsWith("amq.");
    clear(main, h("h1", {}, "Exchange ", h("code", {}, name === "amq.default"
                                                      ? "(AMQP default)" : name),
                  h("span", { class: "muted" }, ` in ${vhost}`)),
          info,
          name === "amq.default" ? null
            : section("Bindings from this exchange", bindings.el,
                      bindForm(vhost, { source: name })),
          section("Publish a message", publishForm(vhost, name)),
          builtin ? null : section("Delete", deleteButton));
    return {
      async refresh() {
        let x;
        try {
          x = await get(`exchanges/${path(vhost, name)}`);
        } catch (err) {
          if (err.status !== 404) throw err;
          clear(info, h("p", { class: "error not-found" },
                        `There is no exchange ${name} in virtual host ${vhost}.`));
          return;
        }
        clear(info, facts([["Type", x.type], ["Features", features(x)],
                           ["Arguments", json(x.arguments)], ["Policy", x.policy || ""],
                           ["Rate in", rate(statRate(x, "publish_in") ?? 0)],
                           ["Rate out", rate(statRate(x, "publish_out") ?? 0)]], "facts wide"));
        if (name !== "amq.default") {
          bindings.update(await get(`exchanges/${path(vhost, name)}/bindings/source`));
        }
      },
    };
  },
};

// --- queues --------------------------------------------------------------------------------

const queues = {
  title: "Queues",
  render(main) {
    const t = table([
      { title: "Name", key: "name", render: (q) => link(queueHash(q), q.name) },
      { title: "Virtual host", key: "vhost" }, { title: "Type", key: "type" },
      { title: "Features", key: features }, { title: "State", key: "state" },
      { title: "Ready", id: "ready", key: "messages_ready", num: true,
        render: (q) => num(q.messages_ready) },
      { title: "Unacked", id: "unacked", key: "messages_unacknowledged", num: true,
        render: (q) => num(q.messages_unacknowledged) },
      { title: "Total", id: "messages", key: "messages", num: true,
        render: (q) => num(q.messages) },
      { title: "Incoming", key: (q) => statRate(q, "publish"), num: true,
        sort: "message_stats.publish_details.rate",
        render: (q) => rate(statRate(q, "publish") ?? 0) },
      { title: "Deliver / get", key: (q) => statRate(q, "deliver_get"), num: true,
        sort: "message_stats.deliver_get_details.rate",
        render: (q) => rate(statRate(q, "deliver_get") ?? 0) },
      { title: "Ack", key: (q) => statRate(q, "ack"), num: true,
        sort: "message_stats.ack_details.rate",
        render: (q) => rate(statRate(q, "ack") ?? 0) },
      { title: "Consumers", id: "consumers", key: "consumers", num: true },
    ], { id: "queues", filter: true, paged: "queues", onError: failed, empty: "No queues." });
    const form = h("form", { class: "inline-form", id: "add-queue" },
      field("Virtual host", vhostSelect()),
      field("Name", h("input", { name: "name", required: true, id: "add-queue-name" })),
      field("Type", select("type", ["classic", "quorum", "stream"], "classic")),
      field("Durable", select("durable", [["true", "yes"], ["false", "no"]], "true")),
      field("Auto delete", select("auto_delete", [["false", "no"], ["true", "yes"]], "false")),
      field("Arguments (JSON)", h("input", { name: "arguments", placeholder: '{"x-max-length": 1000}' })),
      h("button", { type: "submit" }, "Add queue"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(form));
      act(async () => {
        const args = parseJson(f.arguments, "Arguments");
        if (f.type !== "classic") args["x-queue-type"] = f.type;
        await put(`queues/${path(f.vhost, f.name)}`, {
          durable: f.durable === "true", auto_delete: f.auto_delete === "true", arguments: args });
      }, `Queue ${f.name} declared.`);
    });
    clear(main, h("h1", {}, "Queues"), t.el, section("Add a queue", form));
    return { refresh: t.refresh };
  },
};

function messageView(m, i) {
  return h("div", { class: "message", dataset: { index: i } },
    h("h3", {}, `Message ${i + 1}`),
    facts([["Exchange", m.exchange || "(AMQP default)"], ["Routing key", m.routing_key],
           ["Redelivered", m.redelivered ? "yes" : "no"],
           ["Remaining in queue", num(m.message_count)],
           ["Properties", json(m.properties)],
           ["Payload", `${num(m.payload_bytes)} bytes, encoding ${m.payload_encoding}`]]),
    h("pre", { class: "payload" }, m.payload));
}

const queue = {
  title: "Queue",
  nav: "queues",
  args: 2, // vhost, name
  render(main, [vhost, name]) {
    const base = `queues/${path(vhost, name)}`;
    const info = h("section", { id: "queue-info" });
    const consumers = table([
      { title: "Consumer tag", key: "consumer_tag" },
      { title: "Channel", key: "channel_details.name" },
      { title: "Ack required", key: (c) => (c.ack_required ? "yes" : "no") },
      { title: "Exclusive", key: (c) => (c.exclusive ? "yes" : "no") },
      { title: "Prefetch", key: "prefetch_count", num: true },
    ], { id: "queue-consumers", rowKey: (c) => c.consumer_tag, empty: "No consumers." });
    const bindings = bindingsTable("queue-bindings", { showDestination: false });
    const got = h("div", { id: "get-result" });
    const getForm = h("form", { class: "stack-form", id: "get" },
      field("Ack mode", h("select", { name: "ackmode", id: "get-ackmode" },
        [["ack_requeue_true", "Nack message requeue true"],
         ["ack_requeue_false", "Automatic ack"],
         ["reject_requeue_true", "Reject requeue true"],
         ["reject_requeue_false", "Reject requeue false"]]
          .map(([v, t]) => h("option", { value: v }, t)))),
      field("Encoding", select("encoding", [["auto", "Auto string / base64"],
                                            ["base64", "base64"]], "auto")),
      field("Messages", h("input", { name: "count", id: "get-count", type: "number", min: 1,
                                     value: "1" })),
      h("button", { type: "submit", id: "get-submit" }, "Get messages"));
    getForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(getForm));
      try {
        const list = await post(`${base}/get`, { count: Number(f.count) || 1,
                                                 ackmode: f.ackmode, encoding: f.encoding,
                                                 truncate: 50000 });
        clear(got, list.length ? list.map(messageView)
                               : h("p", { class: "muted" }, "Queue is empty."));
        refreshInfo();
      } catch (err) {
        failed(err);
      }
    });
    const purge = button("Purge messages", () => {
      if (!confirm(`Purge all messages of queue ${name}?`)) return;
      act(() => del(`${base}/contents`), `Queue ${name} purged.`);
    }, { id: "purge", class: "danger" });
    const remove = button("Delete this queue", () => {
      if (!confirm(`Delete queue ${name}?`)) return;
      act(async () => {
        await del(base);
        go("#/queues");
      }, `Queue ${name} deleted.`);
    }, { id: "delete-queue", class: "danger" });
    clear(main,
          h("h1", {}, "Queue ", h("code", {}, name), h("span", { class: "muted" }, ` in ${vhost}`)),
          info, section("Consumers", consumers.el),
          section("Bindings", bindings.el, bindForm(vhost, { destination: name })),
          h("div", { class: "columns" },
            section("Publish a message", h("p", { class: "muted" },
                    "To this queue, through the default exchange."),
                    publishForm(vhost, "", name)),
            section("Get messages", h("p", { class: "muted" },
                    "Getting with a requeue mode still takes the messages off and puts them "
                    + "back (redelivered)."), getForm, got)),
          section("Purge and delete", h("div", { class: "buttons" }, purge, remove)));

    async function refreshInfo() {
      const q = await get(base);
      clear(info, facts([
        ["Type", q.type], ["Features", features(q)], ["State", q.state],
        ["Policy", q.policy || ""], ["Arguments", json(q.arguments)],
        ["Ready", num(q.messages_ready)], ["Unacked", num(q.messages_unacknowledged)],
        ["Total", num(q.messages)], ["Consumers", num(q.consumers)],
        ["Incoming", rate(statRate(q, "publish") ?? 0)],
        ["Deliver / get", rate(statRate(q, "deliver_get") ?? 0)],
        ["Ack", rate(statRate(q, "ack") ?? 0)],
        ["Message bytes", q.message_bytes === undefined ? "" : bytes(q.message_bytes)],
      ], "facts wide"));
      consumers.update(q.consumer_details || []);
    }
    return {
      async refresh() {
        try {
          await refreshInfo();
        } catch (err) {
          if (err.status !== 404) throw err;
          clear(info, h("p", { class: "error not-found" },
                        `There is no queue ${name} in virtual host ${vhost}.`));
          return;
        }
        bindings.update(await get(`${base}/bindings`));
      },
    };
  },
};

export const pages = { overview, connections, channels, exchanges, exchange, queues, queue };
