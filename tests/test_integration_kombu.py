"""Integration tests with kombu (py-amqp transport), as Celery uses the broker."""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from helpers import BrokerProcess


@pytest.fixture
def kconn(broker: BrokerProcess) -> Any:
    conn = Connection(f"amqp://guest:guest@127.0.0.1:{broker.port}//", connect_timeout=5,
                      transport_options={"max_retries": 1})
    conn.connect()
    try:
        yield conn
    finally:
        conn.release()


def delete_queue(conn: Connection, name: str) -> None:
    # after the SimpleQueue's consumer is cancelled: deleting a queue under a live
    # consumer makes the broker cancel it, which py-amqp reports as an error
    channel = conn.channel()
    try:
        channel.queue_delete(name)
    finally:
        channel.close()


def drain(conn: Connection, until: Any, timeout: float = 5.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not until():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "timed out waiting for messages"
        try:
            conn.drain_events(timeout=min(0.5, remaining))
        except TimeoutError:
            pass


def test_topic_producer_consumer(kconn: Connection, uid: str) -> None:
    exchange = Exchange("k-topic-" + uid, type="topic", durable=False, auto_delete=True)
    q_all = Queue("k-all-" + uid, exchange, routing_key="events.#", auto_delete=True,
                  durable=False)
    q_err = Queue("k-err-" + uid, exchange, routing_key="*.error", auto_delete=True,
                  durable=False)
    channel = kconn.channel()
    got: dict[str, list[Any]] = {"all": [], "err": []}

    def collect(name: str) -> Any:
        def on_message(body: Any, message: Any) -> None:
            got[name].append((message.delivery_info["routing_key"], body))
            message.ack()
        return on_message

    with Consumer(channel, [q_all], callbacks=[collect("all")], accept=["json"]), \
            Consumer(channel, [q_err], callbacks=[collect("err")], accept=["json"]):
        producer = Producer(channel, exchange=exchange, serializer="json")
        producer.publish({"n": 1}, routing_key="events.info")
        producer.publish({"n": 2}, routing_key="events.error")
        producer.publish({"n": 3}, routing_key="other.error")
        producer.publish({"n": 4}, routing_key="other.info")
        drain(kconn, lambda: len(got["all"]) == 2 and len(got["err"]) == 2)
    assert sorted(got["all"], key=lambda x: x[1]["n"]) == [("events.info", {"n": 1}),
                                                           ("events.error", {"n": 2})]
    assert sorted(got["err"], key=lambda x: x[1]["n"]) == [("events.error", {"n": 2}),
                                                           ("other.error", {"n": 3})]
    channel.close()


def test_simple_queue_put_get_ack(kconn: Connection, uid: str) -> None:
    sq = kconn.SimpleQueue("k-simple-" + uid)
    try:
        for i in range(5):
            sq.put({"i": i, "text": "héllo"}, headers={"h": i})
        seen = []
        for i in range(5):
            message = sq.get(block=True, timeout=5)
            assert message.headers["h"] == i
            seen.append(message.payload)
            message.ack()
        assert seen == [{"i": i, "text": "héllo"} for i in range(5)]
        with pytest.raises(sq.Empty):
            sq.get(block=True, timeout=0.5)
        assert sq.qsize() == 0
    finally:
        sq.close()
        delete_queue(kconn, "k-simple-" + uid)


def test_simple_queue_unacked_message_comes_back(broker: BrokerProcess, uid: str) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}//"
    name = "k-requeue-" + uid
    with Connection(url, connect_timeout=5) as conn:
        sq = conn.SimpleQueue(name)
        sq.put("keep me")
        message = sq.get(block=True, timeout=5)
        assert message.payload == "keep me"
        sq.close()  # closes the channel without acking
    with Connection(url, connect_timeout=5) as conn:
        sq = conn.SimpleQueue(name)
        message = sq.get(block=True, timeout=5)
        assert message.payload == "keep me"
        assert message.delivery_info["redelivered"]
        message.ack()
        sq.close()
        delete_queue(conn, name)


def test_reject_and_requeue(kconn: Connection, uid: str) -> None:
    sq = kconn.SimpleQueue("k-reject-" + uid)
    try:
        sq.put("first")
        m = sq.get(block=True, timeout=5)
        assert not m.delivery_info["redelivered"]
        m.requeue()
        m = sq.get(block=True, timeout=5)
        assert m.payload == "first" and m.delivery_info["redelivered"]
        m.reject()  # dropped
        with pytest.raises(sq.Empty):
            sq.get(block=True, timeout=0.5)
        sq.put("second")
        m = sq.get(block=True, timeout=5)
        assert m.payload == "second"
        m.ack()
    finally:
        sq.close()
        delete_queue(kconn, "k-reject-" + uid)
