"""Names and routing keys are bytes: AMQP short strings need not be UTF-8, and RabbitMQ
treats them as binary. A routing key, queue or exchange name with bytes such as 0xff must
route, dead-letter, persist and recover like any other, and never crash anything.

Frames are built with the broker's own codec (str with surrogate escapes stand for the
raw bytes), since client libraries refuse to send such names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.protocol import fast
from amqp_broker.protocol.frames import content_frames, method_frame
from amqp_broker.storage import MemoryStore
from amqp_broker.storage.disk import DiskStore

from inproc import Client, RawMethod, make_broker, of_type
from inproc import encode_fields as encode_method

KEY = b"key.\xff".decode("utf-8", "surrogateescape")  # the wire bytes 6b 65 79 2e ff
QUEUE = b"q-\xfe\xff".decode("utf-8", "surrogateescape")
EXCHANGE = b"x-\xc3".decode("utf-8", "surrogateescape")  # a truncated UTF-8 sequence


def raw_method(c: Client, key: tuple[int, int], **values: Any) -> None:
    c.conn.receive(method_frame(1, encode_method(key, **values)))


def raw_publish(c: Client, exchange: str, routing_key: str, body: bytes,
                persistent: bool = False) -> None:
    props = fast.encode_properties(fast.Properties(delivery_mode=2 if persistent else None))
    c.conn.receive(b"".join([
        method_frame(1, encode_method((60, 40), ticket=0, exchange=exchange,
                                      routing_key=routing_key, mandatory=False,
                                      immediate=False)),
        *content_frames(1, props, body, 131072)]))


def declare_queue(c: Client, name: str, durable: bool = False, **arguments: Any) -> None:
    raw_method(c, (50, 10), ticket=0, queue=name, passive=False, durable=durable,
               exclusive=False, auto_delete=False, nowait=False, arguments=arguments)


def bind(c: Client, queue: str, exchange: str, routing_key: str) -> None:
    raw_method(c, (50, 20), ticket=0, queue=queue, exchange=exchange,
               routing_key=routing_key, nowait=False, arguments={})


def no_errors(c: Client) -> list[tuple[int, Any]]:
    got = c.frames()
    assert not of_type(got, (commands.Channel.Close, commands.Connection.Close)), got
    return got


def ready(broker: Broker, queue: str) -> list[tuple[bytes, bytes]]:
    """(routing key bytes, body) of each ready message."""
    q = broker.vhosts["/"].queues[queue]
    return [(m.routing_key_raw[1:], broker.body_of(m)) for m in q.ready]


def _client(store: Any = None) -> tuple[Broker, Client]:
    broker = make_broker(store if store is not None else MemoryStore())
    broker.recover()
    c = Client(broker)
    c.open_channel(1)
    return broker, c


def test_expiry_dead_letters_a_non_utf8_routing_key() -> None:
    broker, c = _client()
    raw_method(c, (40, 10), ticket=0, exchange="dlx", exchange_type="fanout", passive=False,
               durable=False, auto_delete=False, internal=False, nowait=False, arguments={})
    declare_queue(c, "dead")
    bind(c, "dead", "dlx", "")
    declare_queue(c, "ttl", **{"x-message-ttl": 10, "x-dead-letter-exchange": "dlx"})
    bind(c, "ttl", "amq.topic", "#")
    raw_publish(c, "amq.topic", KEY, b"m")
    no_errors(c)
    broker.sweep(time.monotonic() + 5)  # the timer: nothing may escape it
    assert ready(broker, "dead") == [(b"key.\xff", b"m")]
    props = fast.decode_properties(broker.vhosts["/"].queues["dead"].ready[0].properties)
    death = props.headers["x-death"][0]
    assert [k if isinstance(k, bytes) else k.encode("utf-8", "surrogateescape")
            for k in death["routing-keys"]] == [b"key.\xff"]


def test_reject_and_max_length_dead_letter_a_non_utf8_routing_key() -> None:
    broker, c = _client()
    declare_queue(c, "dead")
    declare_queue(c, "src", **{"x-max-length": 1, "x-dead-letter-exchange": "",
                               "x-dead-letter-routing-key": "dead"})
    bind(c, "src", "amq.direct", KEY)
    raw_publish(c, "amq.direct", KEY, b"first")
    raw_publish(c, "amq.direct", KEY, b"second")  # pushes "first" out: maxlen
    c.send(commands.Basic.Get(queue="src"), 1)
    (_, ok), = of_type(no_errors(c), RawMethod)  # pamqp cannot decode the key
    assert ok.key == (60, 71)
    c.send(commands.Basic.Reject(delivery_tag=ok.args["delivery_tag"], requeue=False), 1)
    no_errors(c)
    dead = broker.vhosts["/"].queues["dead"].ready
    assert [m.body for m in dead] == [b"first", b"second"]
    for m in dead:
        (death,) = fast.decode_properties(m.properties).headers["x-death"]
        assert [k if isinstance(k, bytes) else k.encode("utf-8", "surrogateescape")
                for k in death["routing-keys"]] == [b"key.\xff"]


def test_binary_names_persist_and_recover(tmp_path: Path) -> None:
    broker, c = _client(DiskStore(tmp_path))
    raw_method(c, (40, 10), ticket=0, exchange=EXCHANGE, exchange_type="direct", passive=False,
               durable=True, auto_delete=False, internal=False, nowait=False, arguments={})
    anyio.run(broker.store.commit)
    declare_queue(c, QUEUE, durable=True)
    anyio.run(broker.store.commit)
    bind(c, QUEUE, EXCHANGE, KEY)
    anyio.run(broker.store.commit)
    raw_publish(c, EXCHANGE, KEY, b"persisted", persistent=True)
    no_errors(c)
    broker.store.close()

    again = make_broker(DiskStore(tmp_path))
    again.recover()
    vhost = again.vhosts["/"]
    assert EXCHANGE in vhost.exchanges and QUEUE in vhost.queues
    assert ready(again, QUEUE) == [(b"key.\xff", b"persisted")]
    q = vhost.queues[QUEUE]
    assert [dest for dest, key, _ in vhost.exchanges[EXCHANGE].table.bindings()
            if key == KEY] == [q]
    again.store.close()


def test_the_timer_contains_an_error_in_one_queue() -> None:
    broker, c = _client()
    declare_queue(c, "a", **{"x-message-ttl": 10})
    declare_queue(c, "b", **{"x-message-ttl": 10})
    raw_publish(c, "", "a", b"x")
    raw_publish(c, "", "b", b"y")
    no_errors(c)
    qa = broker.vhosts["/"].queues["a"]

    def broken(now: float | None = None) -> None:
        raise RuntimeError("a bug in expiry")
    qa.expire = broken  # type: ignore[method-assign]
    broker.sweep(time.monotonic() + 5)  # must not raise
    assert broker.vhosts["/"].queues["b"].message_count == 0  # the other queue still expired
