"""Prometheus metrics (amqp_broker.metrics): rabbitmq_prometheus's names, types and labels,
counted exactly after a known workload, on /metrics, /metrics/per-object and
/metrics/detailed."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from pamqp import commands
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString
from starlette.testclient import TestClient

from amqp_broker.broker import Broker
from amqp_broker.counters import SIZE_BOUNDS
from amqp_broker.metrics import SIZE_LE
from amqp_broker.metrics_http import create_metrics_app
from tests.helpers import free_port, pika_connect
from tests.inproc import Client, make_broker, of_type

# every metric RabbitMQ's "RabbitMQ-Overview" Grafana dashboard (grafana.com 10991,
# rabbitmq-server deps/rabbitmq_prometheus/docker/grafana/dashboards/RabbitMQ-Overview.json)
# queries, as its expressions name them
OVERVIEW_DASHBOARD_METRICS = """
rabbitmq_build_info rabbitmq_channels rabbitmq_channels_closed_total
rabbitmq_channels_opened_total rabbitmq_connections rabbitmq_connections_closed_total
rabbitmq_connections_opened_total rabbitmq_disk_space_available_bytes
rabbitmq_disk_space_available_limit_bytes rabbitmq_erlang_uptime_seconds
rabbitmq_global_consumers rabbitmq_global_messages_acknowledged_total
rabbitmq_global_messages_confirmed_total rabbitmq_global_messages_delivered_consume_auto_ack_total
rabbitmq_global_messages_delivered_consume_manual_ack_total
rabbitmq_global_messages_delivered_get_auto_ack_total
rabbitmq_global_messages_delivered_get_manual_ack_total rabbitmq_global_messages_delivered_total
rabbitmq_global_messages_get_empty_total rabbitmq_global_messages_received_confirm_total
rabbitmq_global_messages_received_total rabbitmq_global_messages_redelivered_total
rabbitmq_global_messages_routed_total rabbitmq_global_messages_unroutable_dropped_total
rabbitmq_global_messages_unroutable_returned_total rabbitmq_global_publishers
rabbitmq_identity_info rabbitmq_message_size_bytes_bucket rabbitmq_message_size_bytes_count
rabbitmq_message_size_bytes_sum rabbitmq_process_max_fds rabbitmq_process_open_fds
rabbitmq_process_resident_memory_bytes rabbitmq_queue_messages_ready
rabbitmq_queue_messages_unacked rabbitmq_queues rabbitmq_queues_created_total
rabbitmq_queues_declared_total rabbitmq_queues_deleted_total
rabbitmq_resident_memory_limit_bytes
""".split()


# --- helpers -------------------------------------------------------------------
Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(sample name -> [(labels, value)], family name -> type) of an exposition."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for lbl, v in samples.get(name, []) if all(lbl.get(k) == x
                                                         for k, x in labels.items())]
    assert len(found) == 1, f"{name} {labels}: {found} (have {sorted(samples)[:20]}...)"
    return found[0]


def scrape(broker: Broker, path: str = "/metrics") -> tuple[Samples, dict[str, str]]:
    response = TestClient(create_metrics_app(broker)).get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def glob(samples: Samples, name: str) -> float:
    return value(samples, "rabbitmq_global_" + name, protocol="amqp091")


def workload(broker: Broker, n: int = 5, m: int = 3) -> Client:
    """Publish n with confirms, get m with manual ack (acked), one get on an empty queue."""
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Confirm.Select(), 1)
    c.send(commands.Queue.Declare(queue="work"), 1)
    c.send(commands.Queue.Declare(queue="empty"), 1)
    for i in range(n):
        c.publish(1, "", "work", b"x" * (50 + i * 100))  # 50, 150, 250, ... bytes
    got = c.frames()
    assert sum(v.delivery_tag for _, v in of_type(got, commands.Basic.Ack)) >= 1
    for _ in range(m):
        c.send(commands.Basic.Get(queue="work"), 1)
    gets = of_type(c.frames(), commands.Basic.GetOk)
    assert len(gets) == m
    for _, get_ok in gets:
        c.send(commands.Basic.Ack(delivery_tag=get_ok.delivery_tag), 1)
    c.send(commands.Basic.Get(queue="empty"), 1)
    assert of_type(c.frames(), commands.Basic.GetEmpty)
    return c


# --- counters after a known workload --------------------------------------------
def test_known_workload_counts_exactly() -> None:
    broker = make_broker()
    workload(broker, n=5, m=3)
    s, types = scrape(broker)
    assert glob(s, "messages_received_total") == 5
    assert glob(s, "messages_received_confirm_total") == 5
    assert glob(s, "messages_confirmed_total") == 5
    assert glob(s, "messages_routed_total") == 5
    get_manual = "messages_delivered_get_manual_ack_total"
    assert value(s, "rabbitmq_global_" + get_manual, queue_type="rabbit_classic_queue") == 3
    assert value(s, "rabbitmq_global_messages_delivered_total") == 3
    assert value(s, "rabbitmq_global_messages_acknowledged_total") == 3
    assert value(s, "rabbitmq_global_messages_get_empty_total") == 1
    assert value(s, "rabbitmq_global_messages_delivered_get_auto_ack_total") == 0
    assert value(s, "rabbitmq_global_messages_delivered_consume_manual_ack_total") == 0
    assert value(s, "rabbitmq_global_messages_delivered_consume_auto_ack_total") == 0
    assert value(s, "rabbitmq_global_messages_redelivered_total") == 0
    assert glob(s, "publishers") == 1 and glob(s, "consumers") == 0
    # the queue families, summed over queues: 2 ready, none unacked
    assert value(s, "rabbitmq_queue_messages_ready") == 2
    assert value(s, "rabbitmq_queue_messages_unacked") == 0
    assert value(s, "rabbitmq_queue_messages") == 2
    assert value(s, "rabbitmq_channel_messages_published_total") == 5
    assert value(s, "rabbitmq_channel_get_ack_total") == 3
    assert value(s, "rabbitmq_channel_get_empty_total") == 1
    # types as RabbitMQ's: counters, gauges, untyped info
    assert types["rabbitmq_global_messages_received"] == "counter"
    assert types["rabbitmq_queue_messages_ready"] == "gauge"
    assert types["rabbitmq_identity_info"] == "unknown"
    assert types["rabbitmq_message_size_bytes"] == "histogram"


def test_message_size_histogram() -> None:
    broker = make_broker()
    workload(broker, n=5, m=0)  # bodies of 50, 150, 250, 350 and 450 bytes
    s, _ = scrape(broker)
    buckets = {lbl["le"]: v for lbl, v in s["rabbitmq_message_size_bytes_bucket"]}
    assert buckets["100.0"] == 1 and buckets["1000.0"] == 5 and buckets["+Inf"] == 5
    assert value(s, "rabbitmq_message_size_bytes_count", protocol="amqp091") == 5
    assert value(s, "rabbitmq_message_size_bytes_sum", protocol="amqp091") == 1250
    # the bounds' text is Prometheus' own float format, which the dashboards' le= use
    assert list(SIZE_LE) == [floatToGoString(b) for b in (*SIZE_BOUNDS, float("inf"))]


def test_consume_redeliver_unroutable_and_closed_channels_keep_counting() -> None:
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="q"), 1)
    c.send(commands.Queue.Declare(queue="auto"), 1)
    for _ in range(4):
        c.publish(1, "", "q", b"m")
    c.publish(1, "", "auto", b"a")
    c.send(commands.Basic.Publish(exchange="amq.direct", routing_key="nowhere",
                                  mandatory=True), 1)
    c.send_many(c.publish_frames(1, "amq.direct", "nowhere", b"r")[1:])
    c.publish(1, "amq.direct", "nowhere", b"d")
    assert of_type(c.frames(), commands.Basic.Return)
    c.send(commands.Basic.Consume(queue="q", consumer_tag="manual"), 1)
    c.send(commands.Basic.Consume(queue="auto", consumer_tag="auto", no_ack=True), 1)
    delivered = of_type(c.frames(), commands.Basic.Deliver)
    assert len(delivered) == 5
    # nack the first with requeue: it comes back redelivered; then ack everything
    first = next(d for _, d in delivered if d.consumer_tag == "manual")
    c.send(commands.Basic.Nack(delivery_tag=first.delivery_tag, requeue=True), 1)
    again = of_type(c.frames(), commands.Basic.Deliver)
    assert [d.redelivered for _, d in again] == [True]
    c.send(commands.Basic.Ack(delivery_tag=0, multiple=True), 1)
    s, _ = scrape(broker)
    assert glob(s, "messages_received_total") == 7
    assert glob(s, "messages_routed_total") == 5
    assert glob(s, "messages_unroutable_returned_total") == 1
    assert glob(s, "messages_unroutable_dropped_total") == 1
    assert value(s, "rabbitmq_global_messages_delivered_consume_manual_ack_total") == 5
    assert value(s, "rabbitmq_global_messages_delivered_consume_auto_ack_total") == 1
    assert value(s, "rabbitmq_global_messages_delivered_total") == 6
    assert value(s, "rabbitmq_global_messages_redelivered_total") == 1
    assert value(s, "rabbitmq_global_messages_acknowledged_total") == 4
    assert glob(s, "consumers") == 2
    assert value(s, "rabbitmq_channel_consumers") == 2
    before = {name: v for name, rows in s.items() if name.startswith("rabbitmq_global_messages")
              for _lbl, v in rows}
    # closing the channel and the connection loses no counts (the totals never go down)
    c.send(commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 1)
    c.conn.connection_lost()
    s, _ = scrape(broker)
    after = {name: v for name, rows in s.items() if name.startswith("rabbitmq_global_messages")
             for _lbl, v in rows}
    assert after == before
    assert value(s, "rabbitmq_channels") == 0 and value(s, "rabbitmq_connections") == 0
    assert value(s, "rabbitmq_channels_opened_total") == 1
    assert value(s, "rabbitmq_channels_closed_total") == 1
    assert value(s, "rabbitmq_connections_opened_total") == 1
    assert value(s, "rabbitmq_connections_closed_total") == 1


def test_queue_churn_counters() -> None:
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="a"), 1)
    c.send(commands.Queue.Declare(queue="a"), 1)  # declared again, not created
    c.send(commands.Queue.Declare(queue="b"), 1)
    c.send(commands.Queue.Declare(queue="b", passive=True), 1)  # not a declaration
    c.send(commands.Queue.Delete(queue="b"), 1)
    s, _ = scrape(broker)
    assert value(s, "rabbitmq_queues_declared_total") == 3
    assert value(s, "rabbitmq_queues_created_total") == 2
    assert value(s, "rabbitmq_queues_deleted_total") == 1
    assert value(s, "rabbitmq_queues") == 1


def test_auth_attempts() -> None:
    broker = make_broker()
    Client(broker)  # logs in
    assert broker.authenticate("guest", "wrong", "127.0.0.1") is not None
    assert broker.authenticate_external("nobody", "127.0.0.1") is not None
    s, _ = scrape(broker)
    assert value(s, "rabbitmq_auth_attempts_total") == 3
    assert value(s, "rabbitmq_auth_attempts_succeeded_total") == 1
    assert value(s, "rabbitmq_auth_attempts_failed_total") == 2


# --- the three endpoints -----------------------------------------------------------
def test_aggregated_has_no_per_object_series_and_every_dashboard_metric() -> None:
    broker = make_broker()
    workload(broker)
    s, _ = scrape(broker, "/metrics")
    missing = [m for m in OVERVIEW_DASHBOARD_METRICS if m not in s]
    assert not missing, missing
    for name, rows in s.items():
        for labels, _v in rows:
            assert not {"queue", "channel", "vhost"} & set(labels), (name, labels)
    identity = s["rabbitmq_identity_info"][0][0]
    assert identity["rabbitmq_endpoint"] == "aggregated"
    assert identity["rabbitmq_cluster"] == broker.cluster_name and identity["rabbitmq_node"]
    assert value(s, "rabbitmq_resident_memory_limit_bytes") == broker.config.memory_high_water
    assert value(s, "rabbitmq_disk_space_available_limit_bytes") == broker.config.disk_free_limit
    assert value(s, "rabbitmq_process_resident_memory_bytes") > 0
    assert value(s, "rabbitmq_process_max_fds") >= value(s, "rabbitmq_process_open_fds") > 0
    assert value(s, "rabbitmq_alarms_memory_used_watermark") == 0


def test_per_object_labels_like_rabbitmq() -> None:
    broker = make_broker()
    c = workload(broker)
    s, _ = scrape(broker, "/metrics/per-object")
    assert value(s, "rabbitmq_queue_messages_ready", vhost="/", queue="work") == 2
    assert value(s, "rabbitmq_queue_messages_ready", vhost="/", queue="empty") == 0
    assert value(s, "rabbitmq_queue_messages_published_total", vhost="/", queue="work") == 5
    info = value(s, "rabbitmq_queue_info", vhost="/", queue="work",
                 queue_type="rabbit_classic_queue", membership="leader")
    assert info == 1
    channel = "127.0.0.1:40000 -> - (1)"
    assert value(s, "rabbitmq_channel_messages_published_total", channel=channel,
                 vhost="/") == 5
    assert value(s, "rabbitmq_channel_get_ack_total", channel=channel, vhost="/") == 3
    assert value(s, "rabbitmq_channel_messages_unacked", channel=channel) == 0
    # connection series carry RabbitMQ's `channel` label (the connection's name)
    conn_bytes = value(s, "rabbitmq_connection_incoming_bytes_total",
                       channel="127.0.0.1:40000 -> -")
    assert conn_bytes == c.conn.recv_oct > 0
    assert value(s, "rabbitmq_connection_channels", channel="127.0.0.1:40000 -> -") == 1
    assert s["rabbitmq_identity_info"][0][0]["rabbitmq_endpoint"] == "per-object"
    # the totals and globals are there too
    assert value(s, "rabbitmq_queues") == 2
    assert glob(s, "messages_received_total") == 5


def test_detailed_filters_by_family_vhost_and_queue() -> None:
    broker = make_broker()
    broker.add_vhost("other")
    broker.vhosts["other"].declare_queue("elsewhere", False, False, False, False, {}, None)
    workload(broker)
    client = TestClient(create_metrics_app(broker))

    def get(query: str) -> Samples:
        response = client.get("/metrics/detailed" + query)
        assert response.status_code == 200, response.text
        return parse(response.text)[0]

    s = get("?family=queue_coarse_metrics")
    ready = {(lbl["vhost"], lbl["queue"]): v
             for lbl, v in s["rabbitmq_detailed_queue_messages_ready"]}
    assert ready == {("/", "work"): 2, ("/", "empty"): 0, ("other", "elsewhere"): 0}
    assert "rabbitmq_detailed_queue_consumers" not in s  # a family not asked for
    assert "rabbitmq_global_messages_received_total" not in s
    assert "rabbitmq_detailed_queue_info" in s
    assert s["rabbitmq_identity_info"][0][0]["rabbitmq_endpoint"] == "detailed"
    s = get("?family=queue_coarse_metrics&family=queue_metrics&vhost=other")
    assert [lbl["queue"] for lbl, _ in s["rabbitmq_detailed_queue_messages_ready"]] == [
        "elsewhere"]
    assert [lbl["queue"] for lbl, _ in s["rabbitmq_detailed_queue_consumers"]] == ["elsewhere"]
    s = get("?family=queue_coarse_metrics&queue=^wo")
    assert [lbl["queue"] for lbl, _ in s["rabbitmq_detailed_queue_messages_ready"]] == ["work"]
    s = get("?family=connection_churn_metrics&family=channel_exchange_metrics"
            "&family=no_such_family")
    assert value(s, "rabbitmq_detailed_connections_opened_total") == 1
    assert [v for _, v in s["rabbitmq_detailed_channel_messages_published_total"]] == [5]
    s = get("?family=vhost_status&family=exchange_names&vhost=other")
    assert [lbl["vhost"] for lbl, _ in s["rabbitmq_cluster_vhost_status"]] == ["other"]
    assert {lbl["exchange"] for lbl, _ in s["rabbitmq_cluster_exchange_name"]} >= {
        "amq.direct", "amq.topic"}
    s = get("")  # no family: identity only, as RabbitMQ
    assert set(s) == {"rabbitmq_build_info", "rabbitmq_identity_info"}
    bad = client.get("/metrics/detailed?family=queue_coarse_metrics&queue=(")
    assert bad.status_code == 400 and "Invalid 'queue' regex" in bad.text
    assert client.get("/metrics/detailed?queue=" + "a" * 2001).status_code == 400


def test_http_methods_and_paths() -> None:
    client = TestClient(create_metrics_app(make_broker()))
    assert client.get("/metrics").status_code == 200
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405
    assert client.get("/nope").status_code == 404


def test_ten_thousand_queues_aggregated_stays_small() -> None:
    broker = make_broker()
    vhost = broker.vhosts["/"]
    for i in range(10_000):
        vhost.declare_queue(f"q{i}", False, False, False, False, {}, None)
    response = TestClient(create_metrics_app(broker)).get("/metrics")
    assert 'queue="' not in response.text
    # the aggregated body does not grow with the number of queues
    assert len(response.content) < 40_000, len(response.content)
    assert value(parse(response.text)[0], "rabbitmq_queues") == 10_000


# --- a running broker ---------------------------------------------------------------
def test_endpoint_on_a_running_broker(broker_factory: Any) -> None:
    port = free_port()
    b = broker_factory("--metrics-port", str(port))
    conn = pika_connect(b.port)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("metrics-q")
    for _ in range(3):
        ch.basic_publish("", "metrics-q", b"x")
    assert ch.basic_get("metrics-q", auto_ack=False)[0] is not None
    base = f"http://127.0.0.1:{port}"
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    s = parse(text)[0]
    assert glob(s, "messages_received_total") == 3
    assert glob(s, "messages_confirmed_total") == 3
    assert value(s, "rabbitmq_queue_messages_ready") == 2
    assert value(s, "rabbitmq_queue_messages_unacked") == 1
    assert value(s, "rabbitmq_connections") == 1
    assert "process_resident_memory_bytes" in s
    text = urllib.request.urlopen(base + "/metrics/per-object", timeout=5).read().decode()
    s = parse(text)[0]
    assert value(s, "rabbitmq_queue_messages_unacked", vhost="/", queue="metrics-q") == 1
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "/nothing", timeout=5)
    assert err.value.code == 404
    conn.close()


def test_busy_metrics_port_is_logged_and_the_broker_runs(broker_factory: Any) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        b = broker_factory("--metrics-port", str(port), "--host", "127.0.0.1")
        conn = pika_connect(b.port)
        assert conn.is_open
        conn.close()
    assert "metrics endpoint unavailable" in b.log_path.read_text()


def test_scrape_streams_family_by_family_letting_the_broker_run() -> None:
    """A big per-object scrape is rendered a family at a time with the event loop free
    in between (other tasks run: the broker is not stalled for the whole scrape)."""
    import anyio

    from amqp_broker.metrics import Scrape, registry_for
    from amqp_broker.metrics_http import stream

    broker = make_broker()
    for i in range(500):
        broker.vhosts["/"].declare_queue(f"q{i}", False, False, False, False, {}, None)
    registry = registry_for(broker, Scrape("per-object"))
    ticks: list[int] = []
    chunks: list[bytes] = []

    async def main() -> None:
        async def ticker() -> None:
            while True:
                ticks.append(len(chunks))
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            async for chunk in stream(registry):
                chunks.append(chunk)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert len(chunks) > 20
    # the other task ran while the scrape was half done
    assert any(0 < n < len(chunks) for n in ticks)
    text = b"".join(chunks).decode()
    assert value(parse(text)[0], "rabbitmq_queue_messages_ready", vhost="/", queue="q499") == 0


def test_size_buckets_count_small_messages_from_received() -> None:
    from amqp_broker.metrics import size_buckets

    # 10 received: 2 over 100 bytes, one over 1000; counts[0] is not kept (ignored)
    assert size_buckets([7, 1, 1, 0, 0, 0, 0, 0, 0], 10) == [8, 1, 1, 0, 0, 0, 0, 0, 0]


def test_dead_lettered_by_reason_and_strategy() -> None:
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="dlq"), 1)
    c.send(commands.Queue.Declare(queue="with-dlx", arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}), 1)
    c.send(commands.Queue.Declare(queue="plain"), 1)
    c.send(commands.Queue.Declare(queue="short", arguments={"x-max-length": 1}), 1)
    for q in ("with-dlx", "with-dlx", "plain"):
        c.publish(1, "", q, b"m")
    for _ in range(3):
        c.publish(1, "", "short", b"s")  # two pushed out, no dead-letter exchange
    c.frames()
    for q in ("with-dlx", "with-dlx", "plain"):
        c.send(commands.Basic.Get(queue=q), 1)
    tags = [v.delivery_tag for _, v in of_type(c.frames(), commands.Basic.GetOk)]
    for tag in tags:
        c.send(commands.Basic.Reject(delivery_tag=tag, requeue=False), 1)
    s, _ = scrape(broker)
    name = "rabbitmq_global_messages_dead_lettered_{}_total"
    assert value(s, name.format("rejected"), dead_letter_strategy="at_most_once") == 2
    assert value(s, name.format("rejected"), dead_letter_strategy="disabled") == 1
    assert value(s, name.format("maxlen"), dead_letter_strategy="disabled") == 2
    assert value(s, name.format("expired"), dead_letter_strategy="at_most_once") == 0
    assert value(s, "rabbitmq_queue_messages_ready") == 3  # dlq 2, short 1


def test_metrics_listener_refuses_a_port_busy_on_ipv6_only() -> None:
    """A port free on IPv4 but taken on IPv6 is an error naming the listener, not a
    silent IPv4-only endpoint (and the IPv4 socket is not left open)."""
    import socket

    from amqp_broker import metrics_http
    taken = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", 0))
    except OSError:
        taken.close()
        pytest.skip("no IPv6 on this machine")
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="prometheus listener"):
            metrics_http.bind("", port)
        free = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        free.bind(("0.0.0.0", port))  # the IPv4 side was given back
        free.close()
    finally:
        taken.close()
