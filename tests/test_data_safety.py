"""Replies that promise durability, and what happens around them, driven in-process.

Each test drives sans-IO connections against a broker whose store reaches "disk"
only when the test says so (inproc.ManualSyncStore), so "answered before the
fsync" is observable without timing.
"""

from __future__ import annotations

from typing import Any

from pamqp import commands

from amqp_broker.storage import MemoryStore, StoreError

from inproc import Client, ManualSyncStore, make_broker, of_type


def _setup(n_clients: int = 1) -> tuple[ManualSyncStore, list[Client]]:
    store = ManualSyncStore()
    broker = make_broker(store)
    clients = [Client(broker) for _ in range(n_clients)]
    for c in clients:
        c.open_channel(1)
    return store, clients


# --- tx.commit-ok means on disk --------------------------------------------------------

def test_tx_commit_ok_waits_for_the_fsync_of_its_persistent_messages() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="txq", durable=True), 1)
    store.sync()
    assert of_type(c.frames(), commands.Queue.DeclareOk)
    c.send(commands.Tx.Select(), 1)
    assert of_type(c.frames(), commands.Tx.SelectOk)
    c.publish(1, "", "txq", b"m1", delivery_mode=2)
    c.publish(1, "", "txq", b"m2", delivery_mode=2)
    c.send(commands.Tx.Commit(), 1)
    assert store.pending
    assert not of_type(c.frames(), commands.Tx.CommitOk)  # not on disk yet
    store.sync()
    assert of_type(c.frames(), commands.Tx.CommitOk)


def test_tx_commit_of_transient_messages_is_answered_at_once() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="txt"), 1)
    c.frames()
    c.send(commands.Tx.Select(), 1)
    c.publish(1, "", "txt", b"m1")
    c.send(commands.Tx.Commit(), 1)
    assert of_type(c.frames(), commands.Tx.CommitOk)


def test_frames_after_a_held_commit_are_answered_after_it() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="txo", durable=True), 1)
    store.sync()
    c.frames()
    c.send(commands.Tx.Select(), 1)
    c.frames()
    c.publish(1, "", "txo", b"m1", delivery_mode=2)
    c.send_many([c.encode(commands.Tx.Commit(), 1),
                 c.encode(commands.Basic.Qos(prefetch_count=5), 1)])
    assert c.frames() == []  # qos-ok may not overtake commit-ok
    store.sync()
    kinds = [type(v) for _, v in c.frames()]
    assert kinds == [commands.Tx.CommitOk, commands.Basic.QosOk]


# --- durable declare/bind/delete replies wait for their own data, nobody else's -------

def test_a_second_connections_redeclare_waits_for_the_definition_fsync() -> None:
    store, (a, b) = _setup(2)
    a.send(commands.Queue.Declare(queue="dq", durable=True), 1)
    assert not of_type(a.frames(), commands.Queue.DeclareOk)
    b.send(commands.Queue.Declare(queue="dq", durable=True), 1)
    assert not of_type(b.frames(), commands.Queue.DeclareOk)  # the queue is not on disk yet
    store.sync()
    assert of_type(a.frames(), commands.Queue.DeclareOk)
    assert of_type(b.frames(), commands.Queue.DeclareOk)


def test_a_nowait_durable_declare_does_not_make_other_clients_wait() -> None:
    store, (a, b) = _setup(2)
    a.send(commands.Queue.Declare(queue="nw", durable=True, nowait=True), 1)
    b.send(commands.Queue.Declare(queue="transient-1"), 1)
    assert of_type(b.frames(), commands.Queue.DeclareOk)
    b.send(commands.Exchange.Declare(exchange="tx-ex", exchange_type="direct"), 1)
    assert of_type(b.frames(), commands.Exchange.DeclareOk)
    store.sync()


def test_auto_delete_of_a_durable_queue_does_not_hold_an_unrelated_declare() -> None:
    store, (a, b) = _setup(2)
    a.send(commands.Queue.Declare(queue="ad", durable=True, auto_delete=True), 1)
    store.sync()
    a.frames()
    a.send(commands.Basic.Consume(queue="ad", consumer_tag="t1"), 1)
    a.send(commands.Basic.Cancel(consumer_tag="t1"), 1)  # auto-deletes the durable queue
    assert of_type(a.frames(), commands.Basic.CancelOk)
    b.send(commands.Queue.Declare(queue="transient-2"), 1)
    assert of_type(b.frames(), commands.Queue.DeclareOk)


def test_durable_bind_and_delete_replies_wait_for_the_fsync() -> None:
    store, (c,) = _setup()
    c.send(commands.Exchange.Declare(exchange="dx", exchange_type="fanout", durable=True), 1)
    c.send(commands.Queue.Declare(queue="dbq", durable=True), 1)
    store.sync()
    store.sync()
    assert len(of_type(c.frames(), (commands.Exchange.DeclareOk, commands.Queue.DeclareOk))) == 2
    for method, ok in ((commands.Queue.Bind(queue="dbq", exchange="dx"), commands.Queue.BindOk),
                       (commands.Queue.Delete(queue="dbq"), commands.Queue.DeleteOk),
                       (commands.Exchange.Delete(exchange="dx"), commands.Exchange.DeleteOk)):
        c.send(method, 1)
        assert not of_type(c.frames(), ok), method
        store.sync()
        assert of_type(c.frames(), ok), method


def test_a_failed_definition_write_is_not_answered_as_done() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="fq", durable=True), 1)
    store.sync(ok=False)
    got = c.frames()
    assert not of_type(got, commands.Queue.DeclareOk)
    (_, close), = of_type(got, commands.Connection.Close)
    assert close.reply_code == 541 and "message store" in close.reply_text


# --- publisher confirms ---------------------------------------------------------------

def test_confirms_wait_for_the_fsync_and_come_in_order_with_transient_ones() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="cq", durable=True), 1)
    store.sync()
    c.send(commands.Confirm.Select(), 1)
    c.frames()
    c.publish(1, "", "cq", b"p1", delivery_mode=2)
    c.publish(1, "", "cq", b"t2")  # transient, but behind an unsynced one
    assert not of_type(c.frames(), commands.Basic.Ack)
    store.sync()
    acks = of_type(c.frames(), commands.Basic.Ack)
    assert [(a.delivery_tag, a.multiple) for _, a in acks] == [(2, True)]


def test_a_failed_write_nacks_the_confirms_that_waited_for_it() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="nq", durable=True), 1)
    store.sync()
    c.send(commands.Confirm.Select(), 1)
    c.frames()
    c.publish(1, "", "nq", b"p1", delivery_mode=2)
    store.sync(ok=False)
    nacks = of_type(c.frames(), commands.Basic.Nack)
    assert [a.delivery_tag for _, a in nacks] == [1]


def test_no_confirm_after_channel_close_ok() -> None:
    # publish + channel.close in one read: the confirm must not follow close-ok
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="cc"), 1)
    c.send(commands.Confirm.Select(), 1)
    c.frames()
    c.send_many([*c.publish_frames(1, "", "cc", b"x"),
                 c.encode(commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0,
                                                 method_id=0), 1)])
    got = c.frames()
    close_ok = next(i for i, (_, v) in enumerate(got) if isinstance(v, commands.Channel.CloseOk))
    assert [v for ch, v in got[close_ok + 1:] if ch == 1] == []


def test_no_held_confirm_after_channel_close_ok() -> None:
    store, (c,) = _setup()
    c.send(commands.Queue.Declare(queue="cc2", durable=True), 1)
    store.sync()
    c.send(commands.Confirm.Select(), 1)
    c.frames()
    c.publish(1, "", "cc2", b"x", delivery_mode=2)
    c.send(commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 1)
    assert of_type(c.frames(), commands.Channel.CloseOk)
    c.send(commands.Channel.Open(), 1)  # the same number, a new channel
    c.frames()
    store.sync()
    assert c.frames() == []


# --- a store that cannot read a body ----------------------------------------------------

class UnreadableStore(MemoryStore):
    def read_body(self, msg_id: int) -> bytes:
        raise StoreError(f"message {msg_id}: bad checksum in segment 1 at 16")


def _paged_out_queue(store: MemoryStore) -> tuple[Any, Client, Client]:
    broker = make_broker(store)
    publisher, consumer = Client(broker), Client(broker)
    publisher.open_channel(1)
    consumer.open_channel(1)
    publisher.send(commands.Queue.Declare(queue="po", durable=True), 1)
    publisher.frames()
    publisher.publish(1, "", "po", b"body", delivery_mode=2)
    q = broker.vhosts["/"].queues["po"]
    assert q.ready[0].stored  # in the store, so its body can be read back
    q.ready[0].body = None  # as if paged out past PAGE_OUT_BYTES
    return q, publisher, consumer


def test_unreadable_body_stays_in_queue_and_never_reaches_the_publisher() -> None:
    q, publisher, consumer = _paged_out_queue(UnreadableStore())
    consumer.send(commands.Basic.Consume(queue="po", consumer_tag="c"), 1)
    assert not of_type(consumer.frames(), commands.Basic.Deliver)
    publisher.publish(1, "", "po", b"second", delivery_mode=2)  # triggers another dispatch
    assert not of_type(publisher.frames(), (commands.Connection.Close, commands.Channel.Close))
    assert len(q.ready) == 2  # nothing vanished


def test_basic_get_of_an_unreadable_body_leaves_it_in_the_queue() -> None:
    q, _publisher, consumer = _paged_out_queue(UnreadableStore())
    consumer.send(commands.Basic.Get(queue="po"), 1)
    (_, close), = of_type(consumer.frames(), commands.Connection.Close)
    assert close.reply_code == 541 and "po" in close.reply_text
    assert len(q.ready) == 1


def test_paged_out_body_is_read_back_for_delivery() -> None:
    q, _publisher, consumer = _paged_out_queue(MemoryStore())
    consumer.send(commands.Basic.Consume(queue="po", consumer_tag="c", no_ack=True), 1)
    bodies = [v.value for _, v in consumer.frames() if type(v).__name__ == "ContentBody"]
    assert bodies == [b"body"]
    assert not q.ready


# --- the reported reproduction, end to end ----------------------------------------------

def test_durable_queue_of_a_vhost_left_out_for_one_restart_keeps_its_messages(
        broker_factory: Any, tmp_path: Any) -> None:
    import pika

    from helpers import pika_params

    data = tmp_path / "vh-data"
    b = broker_factory("--vhosts", "/,v2", data_dir=data)
    conn = pika.BlockingConnection(pika_params(b.port, virtual_host="v2"))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("orders", durable=True)
    for i in range(3):
        ch.basic_publish("", "orders", b"order-%d" % i, pika.BasicProperties(delivery_mode=2))
    conn.close()
    b.stop()
    b.extra_args = ("--vhosts", "/")
    b.restart()
    b.stop()
    b.extra_args = ("--vhosts", "/,v2")
    b.restart()
    conn = pika.BlockingConnection(pika_params(b.port, virtual_host="v2"))
    ch = conn.channel()
    got = []
    for _ in range(3):
        method, _props, body = ch.basic_get("orders", auto_ack=True)
        assert method is not None, f"only {got} came back"
        got.append(body)
    conn.close()
    assert got == [b"order-0", b"order-1", b"order-2"]


def test_paged_out_reads_are_bounded_per_dispatch(monkeypatch: Any) -> None:
    import amqp_broker.queue as queue_mod

    monkeypatch.setattr(queue_mod, "PAGE_IN_BUDGET", 10)  # bytes read per dispatch call
    broker = make_broker(MemoryStore())
    publisher, consumer = Client(broker), Client(broker)
    publisher.open_channel(1)
    consumer.open_channel(1)
    publisher.send(commands.Queue.Declare(queue="pb", durable=True), 1)
    for i in range(3):
        publisher.publish(1, "", "pb", b"body-%05d" % i, delivery_mode=2)  # 10 bytes each
    q = broker.vhosts["/"].queues["pb"]
    for msg in q.ready:
        msg.body = None
    consumer.send(commands.Basic.Consume(queue="pb", consumer_tag="c", no_ack=True), 1)

    def bodies() -> list[bytes]:
        return [v.value for _, v in consumer.frames() if type(v).__name__ == "ContentBody"]

    assert bodies() == [b"body-00000"]  # the budget is spent: the rest waits for the loop
    assert broker.redispatch == {q}
    broker.run_redispatch()
    assert bodies() == [b"body-00001"]
    broker.run_redispatch()
    assert bodies() == [b"body-00002"]
    assert not q.ready and not broker.redispatch


def test_a_pending_or_failing_write_does_not_hold_replies_about_synced_definitions() -> None:
    store, (a, b) = _setup(2)
    a.send(commands.Queue.Declare(queue="old", durable=True), 1)
    store.sync()
    assert of_type(a.frames(), commands.Queue.DeclareOk)
    a.send(commands.Queue.Declare(queue="new", durable=True), 1)  # pending, and will fail
    b.send(commands.Queue.Declare(queue="old", durable=True, passive=True), 1)
    assert of_type(b.frames(), commands.Queue.DeclareOk)  # "old" is on disk already
    b.send(commands.Queue.Declare(queue="old", durable=True), 1)
    assert of_type(b.frames(), commands.Queue.DeclareOk)
    store.sync(ok=False)
    assert of_type(a.frames(), commands.Connection.Close)
