"""x-delayed-message exchanges (amqp_broker/delayed.py, exchanges/delayed.py).

Units drive the scheduler without sockets (Scheduler.tick with a chosen clock, files in
tmp_path); integration tests use pika against a broker subprocess: declare errors,
delivery no earlier than x-delay, due order, routing per x-delayed-type, mandatory,
alternate exchanges, exchange deletion, the management API and a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import requests

from amqp_broker import delayed
from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.exchanges.delayed import DeclareError, Delayed, DelayedExchange, delay_of
from amqp_broker.pipeline import publish
from amqp_broker.protocol import fast
from amqp_broker.protocol.errors import AMQPError
from amqp_broker.protocol.fast import Properties, shortstr
from amqp_broker.queue import Queue
from amqp_broker.storage import MemoryStore
from amqp_broker.vhost import VHost
from tests.helpers import BrokerProcess, pika_connect

CLIENT = object()


# --- the exchange type ---------------------------------------------------------------

@pytest.mark.parametrize(("value", "ms"), [
    (5000, 5000), (1, 1), (0, 0), (-5, 0), (2**32 - 1, 2**32 - 1), (2**32, 0),
    (12.9, 12), ("250", 250), ("+7", 7), ("abc", 0), ("1.5", 0), (True, 0), (None, 0),
    (b"\xff", 0), (float("nan"), 0),
])
def test_delay_of_reads_x_delay_as_the_plugin(value: Any, ms: int) -> None:
    assert delay_of({"x-delay": value}) == ms


def test_declare_arguments() -> None:
    for bad in ({}, {"x-delayed-type": 5}):
        with pytest.raises(DeclareError, match="'x-delayed-type' must be an existing "
                                               "exchange type") as info:
            DelayedExchange(bad)
        assert not info.value.unknown_type
    with pytest.raises(DeclareError, match="unknown exchange type 'bogus'") as info:
        DelayedExchange({"x-delayed-type": "bogus"})
    assert info.value.unknown_type
    with pytest.raises(DeclareError):
        DelayedExchange({"x-delayed-type": "x-delayed-message"})
    table = DelayedExchange({"x-delayed-type": "topic"})
    assert table.bind("q", "a.*", {})
    assert list(table.route("a.b", None)) == ["q"]
    assert list(table.route("a.b", {"x-delay": -1})) == ["q"]
    held = table.route("a.b", {"x-delay": 10})
    assert held.__class__ is Delayed and not held
    assert held.holds == [(table, 10)]  # type: ignore[attr-defined]


# --- the scheduler without sockets -----------------------------------------------------

def _setup(root: Path | None, kind: str = "direct", durable: bool = True
           ) -> tuple[Broker, VHost, Queue]:
    broker = Broker(Config(data_dir=None), MemoryStore())
    vhost = broker.vhosts["/"]
    ex = vhost.declare_exchange("dx", "x-delayed-message", False, durable, False, False,
                                {"x-delayed-type": kind})
    q = vhost.declare_queue("q", False, durable, False, False, {}, CLIENT)[0]
    vhost.bind(ex, q, "k", {})
    broker.delayed.open(root)  # as at start-up: after the definitions
    return broker, vhost, q


def _publish(vhost: VHost, delay: Any, body: bytes = b"m", persistent: bool = True,
             exchange: str = "dx", routing_key: str = "k") -> None:
    props = fast.encode_properties(Properties(headers={"x-delay": delay},
                                              delivery_mode=2 if persistent else 1))
    ex = vhost.exchanges[exchange]
    routed = vhost.route(ex, routing_key, lambda: fast.message_headers(props))
    publish(vhost, exchange, shortstr(exchange), routing_key, shortstr(routing_key), props,
            body, routed)


def _bodies(q: Queue) -> list[bytes]:
    return [q.vhost.broker.body_of(m) for m in q.ready]


def test_held_until_due_then_routed_in_due_order() -> None:
    broker, vhost, q = _setup(None)
    now = delayed.now_ms()
    for ms in (300, 100, 200):
        _publish(vhost, ms, str(ms).encode())
    assert not q.ready
    assert broker.delayed.count_of(vhost.exchanges["dx"]) == 3
    broker.delayed.tick(now + 50)
    assert not q.ready
    broker.delayed.tick(now + 10_000)
    assert _bodies(q) == [b"100", b"200", b"300"]
    headers = fast.decode_properties(q.ready[0].properties).headers
    assert headers is not None and headers["x-delay"] == -100
    assert broker.delayed.count_of(vhost.exchanges["dx"]) == 0


def test_far_messages_stay_on_disk_until_their_bucket_is_near(tmp_path: Path) -> None:
    broker, vhost, q = _setup(tmp_path)
    sched = broker.delayed
    now = delayed.now_ms()
    sched.tick(now)
    for i in range(50):
        _publish(vhost, 60_000 + i, b"far%d" % i)
    _publish(vhost, 60_000, b"transient", persistent=False)
    assert sched.ram_bytes == 0  # nothing far is held in RAM
    files = list((tmp_path / "delayed").glob("*.dly"))
    assert files
    assert sched.count_of(vhost.exchanges["dx"]) == 51
    sched.tick(now + 60_000 - delayed.LOOKAHEAD_MS)  # the bucket comes near: loaded
    assert sched.ram_bytes > 0 and not q.ready
    sched.tick(now + 61_000)
    assert len(q.ready) == 51
    sched.tick(now + 61_000)
    assert not list((tmp_path / "delayed").glob("*.dly"))  # routed: the files go


def test_restart_keeps_persistent_messages_of_durable_exchanges(tmp_path: Path) -> None:
    broker, vhost, _ = _setup(tmp_path)
    now = delayed.now_ms()
    broker.delayed.tick(now)
    _publish(vhost, 30_000, b"persistent")
    _publish(vhost, 30_000, b"transient", persistent=False)
    _publish(vhost, 500, b"near")  # near: in RAM and on disk
    broker.delayed.close()
    # a new broker on the same files, the exchange recovered as from definitions
    again, vhost2, q2 = _setup(tmp_path)
    assert again.delayed.count_of(vhost2.exchanges["dx"]) == 2
    again.delayed.tick(now + 100_000)  # both due during "downtime": routed at once
    assert sorted(_bodies(q2)) == [b"near", b"persistent"]


def test_a_torn_or_corrupt_record_ends_its_file_and_nothing_else(tmp_path: Path) -> None:
    broker, vhost, _ = _setup(tmp_path)
    now = delayed.now_ms()
    broker.delayed.tick(now)
    for i in range(3):
        _publish(vhost, 30_000, b"first%d" % i)
    _publish(vhost, 90_000, b"other bucket")
    broker.delayed.close()
    files = sorted((tmp_path / "delayed").glob("*.dly"))
    assert len(files) == 2
    data = files[0].read_bytes()
    files[0].write_bytes(data[:-3])  # the last record torn
    again, vhost2, q2 = _setup(tmp_path)
    again.delayed.tick(now + 100_000)
    assert sorted(_bodies(q2)) == [b"first0", b"first1", b"other bucket"]
    # a flipped byte inside a record: its checksum fails, the file's rest is skipped
    _publish(vhost2, 30_000, b"a")
    _publish(vhost2, 30_000, b"b")
    again.delayed.close()
    (path,) = (tmp_path / "delayed").glob("*.dly")
    raw = bytearray(path.read_bytes())
    raw[len(delayed.MAGIC) + 30] ^= 0xFF
    path.write_bytes(bytes(raw))
    third, _, q3 = _setup(tmp_path)
    third.delayed.tick(now + 100_000)
    assert _bodies(q3) == []
    assert not list((tmp_path / "delayed").glob("*.dly"))


def test_deleting_the_exchange_drops_its_messages(tmp_path: Path) -> None:
    broker, vhost, q = _setup(tmp_path)
    now = delayed.now_ms()
    broker.delayed.tick(now)
    _publish(vhost, 100)
    _publish(vhost, 30_000)
    vhost.delete_exchange("dx", False)
    ex = vhost.declare_exchange("dx", "x-delayed-message", False, True, False, False,
                                {"x-delayed-type": "direct"})
    vhost.bind(ex, q, "k", {})
    broker.delayed.tick(now + 100_000)
    assert not q.ready
    assert not list((tmp_path / "delayed").glob("*.dly"))
    broker.delayed.close()
    again, _, q2 = _setup(tmp_path)
    again.delayed.tick(now + 100_000)
    assert not q2.ready


def test_alternate_exchange_takes_the_message_at_once_as_in_rabbitmq() -> None:
    broker = Broker(Config(data_dir=None), MemoryStore())
    vhost = broker.vhosts["/"]
    alt = vhost.declare_exchange("alt", "fanout", False, False, False, False, {})
    aq = vhost.declare_queue("aq", False, False, False, False, {}, CLIENT)[0]
    vhost.bind(alt, aq, "", {})
    ex = vhost.declare_exchange("dx", "x-delayed-message", False, False, False, False,
                                {"x-delayed-type": "direct", "alternate-exchange": "alt"})
    q = vhost.declare_queue("q", False, False, False, False, {}, CLIENT)[0]
    vhost.bind(ex, q, "k", {})
    _publish(vhost, 100)
    assert len(aq.ready) == 1 and not q.ready  # route() answered no queue: the AE
    broker.delayed.tick(delayed.now_ms() + 1000)
    assert len(q.ready) == 1 and len(aq.ready) == 1


def test_reached_through_an_exchange_to_exchange_binding() -> None:
    broker, vhost, q = _setup(None)
    front = vhost.declare_exchange("front", "fanout", False, False, False, False, {})
    direct = vhost.declare_queue("direct", False, False, False, False, {}, CLIENT)[0]
    vhost.bind(front, vhost.exchanges["dx"], "", {})
    vhost.bind(front, direct, "", {})
    _publish(vhost, 100, b"m", exchange="front")
    assert len(direct.ready) == 1 and not q.ready  # the fanout's own queue at once
    broker.delayed.tick(delayed.now_ms() + 1000)
    assert _bodies(q) == [b"m"]


def test_declare_errors_through_the_vhost() -> None:
    vhost = Broker(Config(data_dir=None), MemoryStore()).vhosts["/"]
    with pytest.raises(AMQPError) as info:
        vhost.declare_exchange("d", "x-delayed-message", False, False, False, False, {})
    assert info.value.reply_code == 406
    with pytest.raises(AMQPError) as info:
        vhost.declare_exchange("d", "x-delayed-message", False, False, False, False,
                               {"x-delayed-type": "nope"})
    assert info.value.reply_code == 503
    assert "d" not in vhost.exchanges


# --- a real client ------------------------------------------------------------------

def _declare(ch: Any, name: str, kind: str = "direct", durable: bool = False,
             **arguments: Any) -> None:
    ch.exchange_declare(name, "x-delayed-message", durable=durable,
                        arguments={"x-delayed-type": kind, **arguments})


def _queue(ch: Any, name: str, exchange: str, key: str = "k", durable: bool = False,
           arguments: dict[str, Any] | None = None) -> str:
    ch.queue_declare(name, durable=durable)
    ch.queue_bind(name, exchange, key, arguments=arguments)
    return name


def _send(ch: Any, exchange: str, body: bytes, delay: Any = None, key: str = "k",
          persistent: bool = False, mandatory: bool = False,
          headers: dict[str, Any] | None = None) -> None:
    hdrs = dict(headers or {})
    if delay is not None:
        hdrs["x-delay"] = delay
    ch.basic_publish(exchange, key, body, pika.BasicProperties(
        headers=hdrs, delivery_mode=2 if persistent else 1), mandatory=mandatory)


def _receive(ch: Any, queue: str, n: int, timeout: float = 10.0
             ) -> list[tuple[float, Any, bytes]]:
    """n messages as (arrival time, properties, body), waiting up to timeout."""
    got: list[tuple[float, Any, bytes]] = []
    for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=timeout):
        if method is None:
            break
        got.append((time.monotonic(), props, body))
        if len(got) == n:
            break
    ch.cancel()
    return got


def test_declare_errors_as_rabbitmq(broker: BrokerProcess, uid: str) -> None:
    conn = pika_connect(broker.port)
    try:
        for args in ({}, {"x-delayed-type": 1}):
            ch = conn.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                ch.exchange_declare(f"dl-bad-{uid}", "x-delayed-message", arguments=args)
            assert info.value.reply_code == 406
            assert "'x-delayed-type' must be an existing exchange type" in \
                info.value.reply_text
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            ch.exchange_declare(f"dl-bad-{uid}", "x-delayed-message",
                                arguments={"x-delayed-type": "nope"})
        assert closed.value.reply_code == 503
        assert "unknown exchange type 'nope'" in closed.value.reply_text
    finally:
        if conn.is_open:
            conn.close()


def test_delivered_no_earlier_than_x_delay_with_the_plugins_header(
        broker: BrokerProcess, uid: str) -> None:
    conn = pika_connect(broker.port)
    ch = conn.channel()
    ex = f"dl-{uid}"
    _declare(ch, ex)
    q = _queue(ch, f"dlq-{uid}", ex)
    ch.confirm_delivery()
    sent = time.monotonic()
    _send(ch, ex, b"later", 400)  # confirmed at once (basic_publish waits for it)
    _send(ch, ex, b"zero", 0)
    _send(ch, ex, b"negative", -10)
    _send(ch, ex, b"plain")
    got = _receive(ch, q, 4)
    assert [body for _, _, body in got] == [b"zero", b"negative", b"plain", b"later"]
    assert got[1][1].headers["x-delay"] == -10  # not delayed: untouched
    assert "x-delay" not in got[2][1].headers
    arrived, props, _ = got[3]
    assert arrived - sent >= 0.4  # never early
    assert arrived - sent < 5  # and it does arrive (a generous bound)
    assert props.headers["x-delay"] == -400
    ch.exchange_delete(ex)
    ch.queue_delete(q)
    conn.close()


def test_due_order(broker: BrokerProcess, uid: str) -> None:
    conn = pika_connect(broker.port)
    ch = conn.channel()
    ex = f"dl-order-{uid}"
    _declare(ch, ex)
    q = _queue(ch, f"dlq-order-{uid}", ex)
    for ms in (900, 300, 600, 100, 1200):
        _send(ch, ex, str(ms).encode(), ms)
    got = _receive(ch, q, 5)
    assert [int(body) for _, _, body in got] == [100, 300, 600, 900, 1200]
    ch.exchange_delete(ex)
    ch.queue_delete(q)
    conn.close()


@pytest.mark.parametrize("kind", ["fanout", "topic", "headers"])
def test_routes_as_its_x_delayed_type(broker: BrokerProcess, uid: str, kind: str) -> None:
    conn = pika_connect(broker.port)
    ch = conn.channel()
    ex = f"dl-{kind}-{uid}"
    _declare(ch, ex, kind)
    hit, miss = f"dlq-hit-{uid}", f"dlq-miss-{uid}"
    if kind == "fanout":
        _queue(ch, hit, ex, "whatever")
        _queue(ch, miss, ex, "other")  # fanout: both get it
    elif kind == "topic":
        _queue(ch, hit, ex, "a.*")
        _queue(ch, miss, ex, "b.#")
    else:
        _queue(ch, hit, ex, "", arguments={"x-match": "all", "color": "red"})
        _queue(ch, miss, ex, "", arguments={"x-match": "all", "color": "blue"})
    _send(ch, ex, b"m", 150, key="a.b", headers={"color": "red"})
    assert [body for _, _, body in _receive(ch, hit, 1)] == [b"m"]
    expected = 1 if kind == "fanout" else 0
    assert len(_receive(ch, miss, 1, timeout=1.0 if expected else 0.6)) == expected
    for name in (hit, miss):
        ch.queue_delete(name)
    ch.exchange_delete(ex)
    conn.close()


def test_mandatory_is_returned_at_once_and_still_delivered(
        broker: BrokerProcess, uid: str) -> None:
    # the plugin's route answers no queue for a held message: basic.return NO_ROUTE
    conn = pika_connect(broker.port)
    ch = conn.channel()
    returned: list[tuple[int, str]] = []
    ch.add_on_return_callback(lambda _ch, method, _p, _b: returned.append(
        (method.reply_code, method.reply_text)))
    ex = f"dl-mand-{uid}"
    _declare(ch, ex)
    q = _queue(ch, f"dlq-mand-{uid}", ex)
    _send(ch, ex, b"m", 200, mandatory=True)
    conn.process_data_events(time_limit=0.1)
    assert returned == [(312, "NO_ROUTE")]
    assert [body for _, _, body in _receive(ch, q, 1)] == [b"m"]
    ch.exchange_delete(ex)
    ch.queue_delete(q)
    conn.close()


def test_exchange_delete_drops_held_messages(broker: BrokerProcess, uid: str) -> None:
    conn = pika_connect(broker.port)
    ch = conn.channel()
    ex = f"dl-del-{uid}"
    _declare(ch, ex)
    q = _queue(ch, f"dlq-del-{uid}", ex)
    _send(ch, ex, b"m", 300)
    ch.exchange_delete(ex)
    _declare(ch, ex)  # the same name again: nothing comes back
    ch.queue_bind(q, ex, "k")
    assert _receive(ch, q, 1, timeout=1.0) == []
    ch.exchange_delete(ex)
    ch.queue_delete(q)
    conn.close()


def test_restart_keeps_due_times_and_management_counts(
        broker_factory: Callable[..., BrokerProcess], tmp_path: Path) -> None:
    from tests.helpers import free_port
    mgmt = free_port()
    proc = broker_factory("--management-port", str(mgmt))
    conn = pika_connect(proc.port)
    ch = conn.channel()
    _declare(ch, "dl-durable", durable=True)
    _queue(ch, "dlq-durable", "dl-durable", durable=True)
    ch.confirm_delivery()
    sent = time.monotonic()
    _send(ch, "dl-durable", b"soon", 1500, persistent=True)
    _send(ch, "dl-durable", b"transient", 1500)
    _send(ch, "dl-durable", b"much later", 3_600_000, persistent=True)
    info = requests.get(f"http://127.0.0.1:{mgmt}/api/exchanges/%2F/dl-durable",
                        auth=("guest", "guest"), timeout=5).json()
    assert info["type"] == "x-delayed-message" and info["messages_delayed"] == 3
    assert info["arguments"] == {"x-delayed-type": "direct"}
    conn.close()
    proc.stop()
    time.sleep(max(0.0, 1.6 - (time.monotonic() - sent)))  # "soon" falls due while down
    proc.start()
    conn = pika_connect(proc.port)
    ch = conn.channel()
    got = _receive(ch, "dlq-durable", 2, timeout=3.0)
    assert [body for _, _, body in got] == [b"soon"]  # transient ones do not survive
    assert got[0][1].headers["x-delay"] == -1500
    info = requests.get(f"http://127.0.0.1:{mgmt}/api/exchanges/%2F/dl-durable",
                        auth=("guest", "guest"), timeout=5).json()
    assert info["messages_delayed"] == 1
    conn.close()
