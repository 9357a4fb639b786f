"""Recovery of a disk store into a broker, without sockets: stored messages are never
deleted because their definition is missing, and binding records keep stable keys."""

from __future__ import annotations

from pathlib import Path

import anyio
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.storage.disk import DiskStore
from amqp_broker.vhost import binding_store_key

from inproc import Client, make_broker, of_type


def _broker(data: Path, *vhosts: str) -> Broker:
    broker = make_broker(DiskStore(data), vhosts=vhosts)
    broker.recover()
    return broker


def _fill_orders(data: Path) -> None:
    broker = _broker(data, "v2")
    c = Client(broker, "v2")
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="orders", durable=True), 1)
    anyio.run(broker.store.commit)  # the declare-ok waits for this; input resumes after it
    for i in range(3):
        c.publish(1, "", "orders", f"order-{i}".encode(), delivery_mode=2)
    broker.store.close()  # writes and fsyncs everything pending


def _bodies(broker: Broker, vhost: str, queue: str) -> list[bytes]:
    q = broker.vhosts[vhost].queues[queue]
    return [broker.body_of(m) for m in q.ready]


def test_queue_of_a_vhost_not_served_keeps_its_messages(tmp_path: Path) -> None:
    _fill_orders(tmp_path)
    store = DiskStore(tmp_path)
    store.open()
    store.save_definition("vhost\x00v2", None)  # as if the vhost's record had been lost
    store.close()
    without_v2 = _broker(tmp_path)  # restart serving "/" only
    assert "v2\x00orders" in without_v2.orphans
    without_v2.store.close()
    with_v2 = _broker(tmp_path, "v2")
    assert _bodies(with_v2, "v2", "orders") == [b"order-0", b"order-1", b"order-2"]
    with_v2.store.close()


def test_messages_whose_definition_is_lost_come_back_when_the_queue_is_declared(
        tmp_path: Path) -> None:
    _fill_orders(tmp_path)
    store = DiskStore(tmp_path)
    recovery = store.open()
    (key,) = [k for k, rec in recovery.definitions.items() if rec.get("name") == "orders"]
    store.save_definition(key, None)  # as if the record had been corrupt and skipped
    store.close()

    broker = _broker(tmp_path, "v2")
    assert "orders" not in broker.vhosts["v2"].queues
    assert len(broker.orphans["v2\x00orders"]) == 3
    c = Client(broker, "v2")
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="orders", durable=True), 1)
    anyio.run(broker.store.commit)
    (_, ok), = of_type(c.frames(), commands.Queue.DeclareOk)
    assert ok.message_count == 3
    assert _bodies(broker, "v2", "orders") == [b"order-0", b"order-1", b"order-2"]
    broker.store.close()

    again = _broker(tmp_path, "v2")  # the definition is back on disk with its messages
    assert _bodies(again, "v2", "orders") == [b"order-0", b"order-1", b"order-2"]
    assert not again.orphans
    again.store.close()


def test_a_transient_queue_of_the_same_name_does_not_take_stored_messages(
        tmp_path: Path) -> None:
    _fill_orders(tmp_path)
    broker = _broker(tmp_path)
    broker.vhosts["/"].declare_queue("orders", False, False, False, False, {}, None)
    broker.store.close()
    assert _bodies(_broker(tmp_path, "v2"), "v2", "orders") == [
        b"order-0", b"order-1", b"order-2"]


def test_binding_store_key_is_stable_text() -> None:
    key = binding_store_key("/", "ex", "queue", "q", "rk", {"x-match": "all", "n": 1,
                                                            "f": 0.1, "b": b"\x00"})
    assert key.split("\x00")[:6] == ["binding", "/", "ex", "queue", "q", "rk"]
    assert key.split("\x00", 6)[6] == (
        '["table",[["b",["bytes",{"$bytes":"AA=="}]],["f",["float",0.1]],'
        '["n",["int",1]],["x-match",["str","all"]]]]')
    # argument order never makes another key
    assert key == binding_store_key("/", "ex", "queue", "q", "rk",
                                    {"b": b"\x00", "f": 0.1, "n": 1, "x-match": "all"})


def test_a_binding_stored_under_an_older_key_can_still_be_deleted(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    vhost = broker.vhosts["/"]
    ex = vhost.declare_exchange("bx", "direct", False, True, False, False, {})
    q, _ = vhost.declare_queue("bq", False, True, False, False, {}, None)
    broker.store.close()
    # a binding written by an older version whose key spelled the float differently
    store = DiskStore(tmp_path)
    store.open()
    record = {"kind": "binding", "vhost": "/", "source": "bx", "destination_kind": "queue",
              "destination": "bq", "routing_key": "k", "arguments": {"w": 0.1}}
    store.save_definition("binding\x00/\x00bx\x00queue\x00bq\x00k\x00[('w', 0.10000000000000001)]",
                          record)
    store.close()

    broker = _broker(tmp_path)
    vhost = broker.vhosts["/"]
    ex, q = vhost.exchanges["bx"], vhost.queues["bq"]
    assert [(d.name, k) for d, k, _ in ex.table.bindings()] == [("bq", "k")]
    vhost.unbind(ex, q, "k", {"w": 0.1})
    broker.store.close()

    broker = _broker(tmp_path)
    assert list(broker.vhosts["/"].exchanges["bx"].table.bindings()) == []
    broker.store.close()
