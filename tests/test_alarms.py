"""The memory alarm: its decision from explicit numbers (amqp_broker.alarms), what the
broker counts as held, connection.blocked as RabbitMQ sends it (in-process clients), and
one end-to-end run against a subprocess broker with a small watermark.

RabbitMQ 3.10, checked with `rabbitmqctl set_vm_memory_high_watermark`: raising an
alarm sends nothing; a connection (opened before or during the alarm) that publishes
gets connection.blocked once and is read no further; one that only opens, or never
publishes, gets nothing; once the alarm clears, exactly the blocked ones get
connection.unblocked.
"""

from __future__ import annotations

import time
from typing import Any

import pika
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from amqp_broker import alarms
from amqp_broker.alarms import CLEAR, FLAT_CHECKS, LOW, TRIM_EVERY, TRIM_STEP, MemoryAlarm
from amqp_broker.queue import MESSAGE_OVERHEAD
from tests.helpers import RawClient, pika_connect
from tests.test_flow_control import Pusher

from inproc import PROTOCOL_HEADER, Client, make_broker, of_type

MB = 1024 * 1024


# --- the decision, from numbers ---------------------------------------------------------

def test_held_bytes_set_the_alarm_and_clear_it_below_the_low_mark() -> None:
    alarm = MemoryAlarm(100 * MB)
    assert not alarm.update(99 * MB, 50 * MB)
    assert alarm.update(101 * MB, 50 * MB)
    assert alarm.update(int(CLEAR * 100 * MB) + 1, 50 * MB), "hysteresis: still on"
    assert not alarm.update(int(CLEAR * 100 * MB) - 1, 50 * MB)
    assert not alarm.update(99 * MB, 50 * MB), "off until the watermark is passed again"


def test_rss_alone_never_latches_the_alarm_once_the_held_bytes_are_low() -> None:
    """The reported latch: after a burst is drained, freed memory is not returned to the
    OS and RSS stays above the watermark. The alarm asks for a trim, then clears once RSS
    stops falling, and the RSS backstop moves above that floor."""
    w = 100 * MB
    alarm = MemoryAlarm(w)
    assert alarm.update(120 * MB, 160 * MB)  # the burst
    assert not alarm.wants_trim(120 * MB, 160 * MB)
    held, rss = 0, 150 * MB  # drained; RSS stays
    assert alarm.wants_trim(held, rss), "a large drop in held bytes is worth a trim"
    alarm.trimmed(held, rss)
    checks = 0
    while alarm.update(held, rss):
        checks += 1
        if alarm.wants_trim(held, rss):
            alarm.trimmed(held, rss)  # the trim gave nothing back
        assert checks <= FLAT_CHECKS + 2, "RSS alone kept the alarm on"
    assert alarm.rss_limit == rss + w // 2
    # the backstop still guards against growth past the floor
    assert not alarm.update(held, rss + w // 4)
    assert alarm.update(held, rss + w // 2 + 1)


def test_rss_backstop_sets_the_alarm_and_holds_it_while_rss_falls() -> None:
    w = 100 * MB
    alarm = MemoryAlarm(w)
    assert alarm.update(10 * MB, 101 * MB), "RSS past the watermark sets it"
    assert alarm.update(10 * MB, 100 * MB)
    assert alarm.wants_trim(10 * MB, 100 * MB), "only RSS holds it: trim"
    alarm.trimmed(10 * MB, 99 * MB)
    rss = 99 * MB
    for _ in range(3 * FLAT_CHECKS):  # RSS keeps falling: the alarm stays until it is low
        rss -= MB
        on = alarm.update(10 * MB, rss)
        if rss >= CLEAR * w:
            assert on
    assert not alarm.on
    assert alarm.rss_limit == w


def test_rss_keeps_the_alarm_on_while_much_is_held() -> None:
    """RSS past the watermark with half of it or more held: that RSS is what is held
    (the per-message overhead is an estimate), so the alarm stays until consumers drain."""
    w = 100 * MB
    alarm = MemoryAlarm(w)
    assert alarm.update(80 * MB, 101 * MB)
    for _ in range(10 * FLAT_CHECKS):
        assert alarm.update(80 * MB, 101 * MB)
    held = int(LOW * w) - 1  # drained below LOW; RSS stuck: cleared within bounded checks
    checks = 0
    while alarm.update(held, 101 * MB):
        checks += 1
        assert checks <= FLAT_CHECKS + 2


def test_a_raised_rss_floor_follows_rss_back_down() -> None:
    w = 100 * MB
    alarm = MemoryAlarm(w)
    alarm.update(0, 130 * MB)
    for _ in range(FLAT_CHECKS + 2):
        alarm.update(0, 130 * MB)
    assert not alarm.on and alarm.rss_limit == 180 * MB
    alarm.update(0, 60 * MB)
    assert alarm.rss_limit == 60 * MB + w // 2
    alarm.update(0, 40 * MB)
    assert alarm.rss_limit == w, "never below the watermark"
    assert alarm.update(0, 101 * MB)


def test_held_bytes_past_the_watermark_set_the_alarm_whatever_the_rss() -> None:
    alarm = MemoryAlarm(100 * MB)
    assert alarm.update(101 * MB, None)
    assert not alarm.update(0, None), "no RSS known: the held bytes decide alone"


def test_trims_follow_large_drops_and_unexplained_growth_not_every_wobble() -> None:
    alarm = MemoryAlarm(10_000 * MB)
    assert not alarm.wants_trim(100 * MB, 150 * MB)
    assert not alarm.wants_trim(90 * MB, 150 * MB), "a small drop"
    assert alarm.wants_trim(100 * MB - TRIM_STEP, 150 * MB), "held bytes fell by TRIM_STEP"
    alarm.trimmed(100 * MB - TRIM_STEP, 80 * MB)
    assert not alarm.wants_trim(100 * MB - TRIM_STEP, 80 * MB)
    # a burst churns the heap: RSS grows TRIM_STEP past what the held bytes explain;
    # that is trimmed too, but at most once per TRIM_EVERY checks
    asked = [alarm.wants_trim(100 * MB - TRIM_STEP, 80 * MB + TRIM_STEP)
             for _ in range(TRIM_EVERY)]
    assert not any(asked[:TRIM_EVERY // 2]) and asked[-1], asked


def test_trim_memory_runs() -> None:
    alarms.trim_memory()  # glibc: malloc_trim; elsewhere a no-op; never raises


# --- what the broker counts ----------------------------------------------------------------

def test_held_bytes_count_bodies_overhead_and_buffers_and_return_to_zero() -> None:
    broker = make_broker()
    c = Client(broker)
    c.open_channel()
    c.send(commands.Queue.Declare(queue="q"), 1)
    c.frames()
    c.conn.drained()
    base = broker.memory_held()
    for _ in range(10):
        c.publish(1, "", "q", b"x" * 1000)
    q = broker.vhosts["/"].queues["q"]
    assert q.ram_bytes == 10_000
    assert broker.memory_held() - base == 10 * (1000 + MESSAGE_OVERHEAD)
    c.send(commands.Basic.Get(queue="q"), 1)  # unacked, its reply still buffered
    held = broker.memory_held() - base
    assert held >= 9 * (1000 + MESSAGE_OVERHEAD) + 1000 + 1000, held
    c.frames()
    c.conn.drained()
    c.send(commands.Basic.Ack(delivery_tag=1), 1)
    c.send(commands.Queue.Purge(queue="q"), 1)
    c.frames()
    c.conn.drained()
    assert q.ram_bytes == 0
    assert broker.memory_held() == base


def test_paged_out_bodies_count_nothing_in_ram_and_counts_stay_true(monkeypatch: Any) -> None:
    """A persistent message routed to two durable queues, one past the page-out level:
    each queue's count of bodies in RAM comes back to zero once both are drained."""
    from amqp_broker import queue as queue_module
    monkeypatch.setattr(queue_module, "PAGE_OUT_BYTES", 2500)
    broker = make_broker()
    c = Client(broker)
    c.open_channel()
    for name in ("a", "b"):
        c.send(commands.Queue.Declare(queue=name, durable=True), 1)
        c.send(commands.Queue.Bind(queue=name, exchange="amq.fanout"), 1)
    c.publish(1, "", "b", b"y" * 2000, delivery_mode=2)  # b alone: past the level next time
    for _ in range(5):
        c.publish(1, "amq.fanout", "", b"z" * 1000, delivery_mode=2)
    qa, qb = broker.vhosts["/"].queues["a"], broker.vhosts["/"].queues["b"]
    assert qa.ram_bytes == sum(m.body_size for m in qa.ready if m.body is not None)
    assert qb.ram_bytes == sum(m.body_size for m in qb.ready if m.body is not None)
    assert qb.ram_bytes < qb.ready_bytes
    for name in ("a", "b"):
        for _ in range(6):
            c.send(commands.Basic.Get(queue=name, no_ack=True), 1)
        c.frames()
    assert qa.ram_bytes == qb.ram_bytes == 0 and not qa.ready and not qb.ready


# --- connection.blocked, in-process --------------------------------------------------------

class BlockingClient(Client):
    """An in-process client that announces the connection.blocked capability."""

    def __init__(self, broker: Any, blocked_capability: bool = True) -> None:
        from amqp_broker.connection import Connection
        self.conn = Connection(broker, ("127.0.0.1", 40001))
        self.conn.receive(PROTOCOL_HEADER)
        caps: Any = {"connection.blocked": blocked_capability, "consumer_cancel_notify": True}
        self.send(commands.Connection.StartOk(client_properties={"capabilities": caps},
                                              mechanism="PLAIN", response="\x00guest\x00guest",
                                              locale="en_US"))
        self.send(commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
        self.send(commands.Connection.Open(virtual_host="/"))
        self.frames()


def _declare(c: Client, queue: str) -> None:
    c.open_channel()
    c.send(commands.Queue.Declare(queue=queue), 1)
    c.frames()


def test_publisher_during_an_alarm_is_blocked_once_held_and_released() -> None:
    broker = make_broker()
    before, idle = BlockingClient(broker), BlockingClient(broker)
    _declare(before, "q")
    broker.set_alarms({"memory"})
    assert before.frames() == [] and idle.frames() == [], "raising an alarm sends nothing"
    before.publish(1, "", "q", b"one")
    before.publish(1, "", "q", b"two")
    before.send(commands.Queue.Declare(queue="q", passive=True), 1)
    got = before.frames()
    assert [type(v) for _, v in got] == [commands.Connection.Blocked], got
    assert got[0][1].reason == "low on memory"
    assert before.conn.paused and before.conn.input_stalled
    assert len(broker.vhosts["/"].queues["q"].ready) == 0, "input after the publish is held"
    broker.set_alarms({"memory", "disk"})  # another alarm: still blocked, nothing sent
    assert before.frames() == []
    broker.set_alarms(set())
    got = before.frames()
    assert isinstance(got[0][1], commands.Connection.Unblocked), got
    (_, ok), = of_type(got, commands.Queue.DeclareOk)
    assert ok.message_count == 2, "the held publishes went through once unblocked"
    assert idle.frames() == [], "a connection that never published gets nothing"
    assert not before.conn.paused


def test_connection_opened_during_an_alarm_is_blocked_when_it_publishes() -> None:
    """The reported hang: a connection opened during the alarm was never told."""
    broker = make_broker()
    broker.set_alarms({"memory"})
    late = BlockingClient(broker)
    _declare(late, "q")  # opening and declaring is not blocked, as RabbitMQ
    late.publish(1, "", "q", b"x")
    assert of_type(late.frames(), commands.Connection.Blocked)
    broker.set_alarms(set())
    assert of_type(late.frames(), commands.Connection.Unblocked)


def test_a_client_without_the_capability_is_held_but_not_told() -> None:
    broker = make_broker()
    c = BlockingClient(broker, blocked_capability=False)
    _declare(c, "q")
    broker.set_alarms({"disk"})
    c.publish(1, "", "q", b"x")
    c.send(commands.Basic.Get(queue="q"), 1)
    assert c.frames() == []
    broker.set_alarms(set())
    assert [type(v) for _, v in c.frames()][0] is commands.Basic.GetOk


# --- end to end: a subprocess broker with a small watermark ---------------------------------

def _flood(port: int, queue: str) -> None:
    """Publish 4 kB transient messages until the broker stops reading for good: a
    stall longer than it takes an alarm held by RSS alone to clear (bounded)."""
    body = b"f" * 4096
    chunk = (frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
             + frame.marshal(header.ContentHeader(0, len(body), commands.Basic.Properties()), 1)
             + frame.marshal(ContentBody(body), 1)) * 1000
    with RawClient(port) as flood:
        flood.handshake()
        flood.open_channel()
        stalled = Pusher(flood.sock, chunk).push(200, 1.0 + FLAT_CHECKS * 0.25 * 2)
        assert stalled, "800 MB and no memory alarm"


def _wait(conn: pika.BlockingConnection, done: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    return bool(done())


def test_alarm_sets_on_a_flood_and_clears_once_drained(broker_factory: Any, uid: str) -> None:
    b = broker_factory("--memory-high-watermark", str(100 * MB), data_dir=None)
    queue = f"flood-{uid}"
    events: dict[str, list[Any]] = {"blocked": [], "unblocked": [], "late": [], "late_un": []}
    conn = pika_connect(b.port, blocked_connection_timeout=60)
    conn.add_on_connection_blocked_callback(lambda *_: events["blocked"].append(1))
    conn.add_on_connection_unblocked_callback(lambda *_: events["unblocked"].append(1))
    ch = conn.channel()
    # a priority queue keeps its backlog in RAM (a FIFO queue would spool it to disk)
    ch.queue_declare(queue, arguments={"x-max-priority": 1})
    _flood(b.port, queue)
    ch.basic_publish("", queue, b"during the alarm")
    assert _wait(conn, lambda: events["blocked"], 10), "no connection.blocked"
    # a connection opened during the alarm: blocked as soon as it publishes
    late = pika_connect(b.port, blocked_connection_timeout=60)
    late.add_on_connection_blocked_callback(lambda *_: events["late"].append(1))
    late.add_on_connection_unblocked_callback(lambda *_: events["late_un"].append(1))
    late_ch = late.channel()
    late_ch.basic_publish("", queue, b"late")
    assert _wait(late, lambda: events["late"], 10), "connection opened during the alarm " \
        "got no connection.blocked"
    # a consumer (it never publishes, so it is not blocked) drains everything
    consumer = pika_connect(b.port)
    cch = consumer.channel()
    cch.basic_qos(prefetch_count=500)
    drained = 0
    for method, _props, _body in cch.consume(queue, auto_ack=True, inactivity_timeout=3):
        if method is None:
            break
        drained += 1
    assert drained > 5_000
    assert _wait(conn, lambda: events["unblocked"], 20), "the alarm did not clear after draining"
    assert _wait(late, lambda: events["late_un"], 5)
    # publishing works again: both held publishes and a new one arrive
    ch.basic_publish("", queue, b"after")
    got = []
    for method, _props, body in cch.consume(queue, auto_ack=True, inactivity_timeout=5):
        if method is None:
            break
        got.append(body)
        if b"after" in got:
            break
    assert b"after" in got, got
    for c in (consumer, late, conn):
        c.close()
