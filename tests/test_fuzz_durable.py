"""The fuzz of test_fuzz_connection against the durable store: durable declares,
persistent publishes, acks, purges and deletes drive the DiskStore, group commits run
between frames, and the data directory recovers afterwards into what the broker held."""

from __future__ import annotations

import random
import struct
import tempfile
from collections.abc import Callable

import anyio
import pytest
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.protocol.frames import frame
from amqp_broker.storage.disk import DiskStore
from tests.test_connection import Peer
from tests.test_fuzz_connection import check_accounting

from inproc import encode_fields as encode_method

# names and keys need not be UTF-8 on the wire: these stand for raw bytes (surrogate escapes)
BQ = b"q\xff".decode("utf-8", "surrogateescape")
BX = b"x\xc3".decode("utf-8", "surrogateescape")
BK = b"k.\xfe".decode("utf-8", "surrogateescape")
PERSISTENT = commands.Basic.Properties(delivery_mode=2)
TRANSIENT = commands.Basic.Properties()


def method(key: tuple[int, int], **values: object) -> bytes:  # on channel 1
    return frame(1, 1, encode_method(key, **values))


def publish(exchange: str, key: str, body: bytes, props: commands.Basic.Properties) -> bytes:
    head = struct.pack(">HHQ", 60, 0, len(body)) + props.marshal()
    return (method((60, 40), exchange=exchange, routing_key=key) + frame(2, 1, head)
            + (frame(3, 1, body) if body else b""))


def random_op(rng: random.Random) -> bytes:
    """One client frame (or frames), weighted toward what exercises the store."""
    tag = rng.choice([1, 1, 2, 3, 0, 5])
    choices: list[tuple[int, Callable[[], bytes]]] = [
        (8, lambda: publish(rng.choice(["", "", "", "x", BX]),
                            rng.choice(["q", "q", "q", "k", BQ, BK]),
                            rng.randbytes(rng.choice([0, 3, 900, 3000])),
                            rng.choice([PERSISTENT, PERSISTENT, TRANSIENT]))),
        (5, lambda: method((60, 70), queue=rng.choice(["q", "q", BQ]),
                           no_ack=rng.random() < 0.3)),
        (5, lambda: method((60, 80), delivery_tag=tag, multiple=rng.random() < 0.3)),
        (2, lambda: method((60, 120), delivery_tag=tag, multiple=rng.random() < 0.3,
                           requeue=rng.random() < 0.5)),
        (2, lambda: method((60, 90), delivery_tag=tag, requeue=rng.random() < 0.5)),
        (2, lambda: method((60, 20), queue="q", consumer_tag=rng.choice(["c1", "c2"]),
                           no_ack=rng.random() < 0.3)),
        (1, lambda: method((60, 30), consumer_tag=rng.choice(["c1", "c2"]))),
        (1, lambda: method((50, 20), queue=rng.choice(["q", BQ]), exchange=rng.choice(["x", BX]),
                           routing_key=rng.choice(["k", "#", BK]))),
        (1, lambda: method((60, 110), requeue=True)),
        (1, lambda: method((50, 30), queue="q")),
        (1, lambda: method((50, 40), queue="q")),
        (1, lambda: method((50, 10), queue=rng.choice(["q", "q2", BQ]), durable=True)),
        (1, lambda: method((60, 10), prefetch_count=rng.randint(0, 3))),
        (1, lambda: method(rng.choice([(90, 10), (90, 20), (90, 30), (85, 10)]))),
        (1, lambda: method((20, 40), reply_code=200, reply_text="", class_id=0, method_id=0)),
    ]
    total = sum(weight for weight, _ in choices)
    pick = rng.uniform(0, total)
    for weight, build in choices:
        pick -= weight
        if pick <= 0:
            return build()
    return choices[0][1]()


def durable_peer(broker: Broker) -> Peer:
    peer = Peer(broker)
    peer.handshake()
    peer.method(1, commands.Channel.Open())
    peer.method(1, commands.Queue.Declare(queue="q", durable=True))
    peer.method(1, commands.Exchange.Declare(exchange="x", exchange_type="topic", durable=True))
    peer.send(method((50, 10), queue=BQ, durable=True))
    peer.send(method((40, 10), exchange=BX, exchange_type="topic", durable=True))
    return peer


@pytest.mark.parametrize("seed", range(12))
def test_random_frames_against_the_disk_store(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        run_sequence([random_op(rng) for _ in range(rng.randint(3, 40))])


def run_sequence(sequence: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        async def main() -> dict[str, int]:
            store = DiskStore(data_dir, fsync=False, segment_size=4096)
            broker = Broker(Config(data_dir=data_dir), store)
            broker.recover()
            bad = durable_peer(broker)
            for data in sequence:
                replies = bad.send(data)
                while store._has_pending():  # noqa: SLF001 - drive the group commit here
                    await store.commit()
                replies += bad.send(b"")
                for reply in replies:
                    if reply[1] in ((10, 50), (20, 40)):
                        assert reply[2]["reply_code"] != 541, reply
                    if reply[1] == (20, 40):
                        bad.method(reply[0], commands.Channel.CloseOk())
                        bad.method(reply[0], commands.Channel.Open())
                    if reply[1] == (20, 41):  # we closed channel 1 ourselves: reopen it
                        bad.method(reply[0], commands.Channel.Open())
                if bad.conn.state.value in ("closing", "closed"):
                    bad = durable_peer(broker)
            check_accounting(broker)
            bad.conn.connection_lost()  # unacked messages go back to their queues
            while store._has_pending():  # noqa: SLF001
                await store.commit()
            held = {q.name: sum(1 for m in q.ready if m.stored)
                    for q in broker.queues() if q.durable}
            store.close()
            return held

        held = anyio.run(main)
        # what a restart finds is exactly the persistent messages the durable queues held
        store = DiskStore(data_dir, fsync=False)
        broker = Broker(Config(data_dir=data_dir), store)
        broker.recover()
        found = {q.name: len(q.ready) for q in broker.queues() if q.durable}
        store.close()
        assert found == held
