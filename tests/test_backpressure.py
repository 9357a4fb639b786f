"""What the broker buffers for a client that does not read stays bounded: past
max_connection_buffer of output (queued or being sent) a connection is no longer read
until that output drains, so mandatory returns and pipelined basic.get replies wait in
the client's TCP window, not in the broker. Publishers of persistent messages wait for
the group commit once the store holds max_unsynced_bytes of bodies not yet on disk.

In-process tests drive a Connection the way the I/O shell does: input in reads of at most
64 kB, none while the connection is paused; take_output then drained() once "sent".
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from amqp_broker.storage.disk import DiskStore
from tests.helpers import RawClient
from tests.test_flow_control import Pusher

from inproc import Client, make_broker

READ = 65536  # the shell's read size
MB = 1024 * 1024


def _shell(c: Client, data: bytes, when_paused: Callable[[], None], rounds: int = 100_000) -> None:
    """Feed data as the I/O shell would: one read at a time, none while paused (then
    when_paused must let the connection go on: the client reads, the disk syncs)."""
    pos = 0
    for _ in range(rounds):
        if c.conn.paused:
            when_paused()
            continue
        if pos >= len(data):
            return
        c.conn.receive(data[pos:pos + READ])
        pos += READ
    raise AssertionError("the connection never went on")


class Reader:
    """A client that reads its socket only when told: counts what it got."""

    def __init__(self, c: Client) -> None:
        self.c = c
        self.kinds: dict[str, int] = {}
        self.peak = 0  # the most the connection ever buffered for it

    def check(self) -> None:
        self.peak = max(self.peak, self.c.conn.out_size + self.c.conn.in_flight)

    def read(self) -> None:
        self.check()
        for _, value in self.c.frames():  # take_output: now "in flight"
            name = type(value).__name__
            self.kinds[name] = self.kinds.get(name, 0) + 1
        self.c.conn.drained()  # ... and sent


def test_mandatory_returns_to_a_publisher_that_does_not_read_stay_bounded() -> None:
    """The reported case: 300 MB of unroutable mandatory messages from a publisher that
    never reads grew RSS by 420 MB. Now the broker stops reading it at the cap, and
    every return still arrives once it reads."""
    broker = make_broker()
    cap = broker.config.max_connection_buffer
    c = Client(broker)
    c.open_channel()
    body = b"m" * 65536
    publish = c.encode(commands.Basic.Publish(exchange="", routing_key="nowhere",
                                              mandatory=True), 1)
    one = publish + b"".join(c.publish_frames(1, "", "nowhere", body)[1:])
    n = 300  # about 20 MB
    reader = Reader(c)
    stalls = [0]

    def client_reads() -> None:
        stalls[0] += 1
        assert c.conn.throttled and c.conn.input_stalled
        reader.read()

    _shell(c, one * n, client_reads)
    reader.read()
    assert reader.kinds.get("Return") == n, reader.kinds
    assert stalls[0] > 1, "the broker never stopped reading the publisher"
    assert reader.peak <= cap + len(one) + 1024, reader.peak
    assert broker.memory_held() < cap


def test_pipelined_basic_get_replies_stay_bounded() -> None:
    """2,000 pipelined basic.get on a large backlog added about 90 MB: now the replies
    wait for the client to read past the cap."""
    broker = make_broker()
    cap = broker.config.max_connection_buffer
    c = Client(broker)
    c.open_channel()
    c.send(commands.Queue.Declare(queue="backlog"), 1)
    for _ in range(500):
        c.publish(1, "", "backlog", b"g" * 50_000)
    c.frames()
    c.conn.drained()
    gets = c.encode(commands.Basic.Get(queue="backlog", no_ack=True), 1) * 2000
    reader = Reader(c)
    _shell(c, gets, reader.read)
    reader.read()
    assert reader.kinds.get("GetOk") == 500 and reader.kinds.get("GetEmpty") == 1500, \
        reader.kinds
    assert reader.peak <= cap + 60_000, reader.peak


def test_a_consumer_over_the_cap_is_read_again_once_drained() -> None:
    """Deliveries pause at write_high_water; a large message can take the output past
    the cap, and the consumer's acks are read again once it drained."""
    broker = make_broker()
    c = Client(broker)
    c.open_channel()
    c.send(commands.Queue.Declare(queue="big"), 1)
    c.frames()
    big = b"b" * (broker.config.max_connection_buffer + 1)
    step = 131072 - 8  # frame_max
    c.send_many([c.encode(commands.Basic.Publish(exchange="", routing_key="big"), 1),
                 c.encode(header.ContentHeader(0, len(big), commands.Basic.Properties()), 1),
                 *(c.encode(ContentBody(big[i:i + step]), 1) for i in range(0, len(big), step))])
    c.send(commands.Basic.Consume(queue="big", consumer_tag="t"), 1)
    assert c.conn.throttled
    c.send(commands.Basic.Qos(prefetch_count=5), 1)  # held
    kinds = [type(v).__name__ for _, v in c.frames()]
    assert "Deliver" in kinds and "QosOk" not in kinds, kinds
    c.conn.drained()
    assert not c.conn.throttled and not c.conn.paused
    assert [type(v).__name__ for _, v in c.frames()] == ["QosOk"]


def test_persistent_burst_without_confirms_waits_for_the_group_commit(tmp_path: Path) -> None:
    """A persistent burst without confirms kept its bodies in the store's unsynced buffer
    for as long as publishing outran fsync. Past max_unsynced_bytes the publisher is no
    longer read until the next group commit: what waits for the disk stays bounded."""
    store = DiskStore(tmp_path / "data")
    store.open()
    limit = 2 * MB
    broker = make_broker(store, max_unsynced_bytes=limit)  # type: ignore[arg-type]
    c = Client(broker)
    c.open_channel()
    c.send(commands.Queue.Declare(queue="dq", durable=True), 1)
    anyio.run(store.commit)
    c.frames()
    body = os.urandom(20_000)
    data = b"".join(c.publish_frames(1, "", "dq", body, delivery_mode=2)) * 1000  # 20 MB
    peak = [0]
    commits = [0]

    def disk_syncs() -> None:
        peak[0] = max(peak[0], store.unsynced_bytes)
        commits[0] += 1
        anyio.run(store.commit)

    try:
        _shell(c, data, disk_syncs)
        peak[0] = max(peak[0], store.unsynced_bytes)
        assert commits[0] >= 5, commits
        assert peak[0] <= limit + READ + len(body), peak
        assert broker.vhosts["/"].queues["dq"].message_count == 1000
    finally:
        store.close()


# --- end to end -----------------------------------------------------------------------

def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024


def test_publisher_that_never_reads_its_returns_is_no_longer_read(broker: Any) -> None:
    """A subprocess broker, a raw publisher of unroutable mandatory messages that does not
    read: the broker stops reading it (its sends stall) with little RSS growth; once the
    publisher reads, every return arrives and the rest of its publishes are read."""
    body = b"r" * 65536
    one = (frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere-at-all",
                                                mandatory=True), 1)
           + frame.marshal(header.ContentHeader(0, len(body), commands.Basic.Properties()), 1)
           + frame.marshal(ContentBody(body), 1))
    per_chunk = 16  # 1 MB a chunk
    with RawClient(broker.port) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.handshake()
        c.open_channel()
        base = _rss_mb(broker.pid) if broker.proc else 0
        pusher = Pusher(c.sock, one * per_chunk)
        assert pusher.push(100, 2.0), "100 MB of returns and the broker kept reading"
        if broker.proc:
            grown = _rss_mb(broker.pid) - base
            assert grown < 60, f"broker RSS grew {grown} MB for a publisher that does not read"
        returns = [0]
        stop = threading.Event()

        def read() -> None:  # the client reads now, on a second socket object
            rd = socket.socket(fileno=os.dup(c.sock.fileno()))
            rd.settimeout(0.5)
            buf = b""
            try:
                while not stop.is_set():
                    try:
                        data = rd.recv(1 << 20)
                    except TimeoutError:
                        continue
                    if not data:
                        return
                    buf += data
                    while len(buf) >= 7 and len(buf) >= int.from_bytes(buf[3:7], "big") + 8:
                        used, _, value = frame.unmarshal(buf)
                        buf = buf[used:]
                        if isinstance(value, commands.Basic.Return):
                            returns[0] += 1
            finally:
                rd.close()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            # the chunk in progress and 20 more (20 MB): the broker reads them all
            assert not pusher.push(21, 10.0), "the broker never read the publisher again"
            expected = pusher.sent * per_chunk
            deadline = time.monotonic() + 30
            while returns[0] < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert returns[0] == expected
        finally:
            stop.set()
            t.join(5)


def test_a_big_body_is_queued_apart_and_counted_whole() -> None:
    """A 64 KiB delivery goes into the output as its frames plus the body itself (not
    copied into one buffer first); out_size counts all of it and the client gets it."""
    broker = make_broker()
    pub, sub = Client(broker), Client(broker)
    pub.open_channel()
    sub.open_channel()
    pub.send(commands.Queue.Declare(queue="big"), 1)
    sub.send(commands.Basic.Consume(queue="big", no_ack=True), 1)
    sub.frames()
    body = os.urandom(64 * 1024)
    pub.publish(1, "", "big", body)
    conn = sub.conn
    queued = conn.out_size
    parts = conn.take_parts()  # what the shell hands to writelines
    assert [len(part) for part in parts].count(len(body)) == 1
    assert any(part == body for part in parts)
    assert queued == sum(len(part) for part in parts) > len(body)
    assert conn.out_size == 0 and conn.in_flight == queued
    data = b"".join(parts)
    got = []
    while data:
        used, _channel, value = frame.unmarshal(data)
        got.append(value)
        data = data[used:]
    assert b"".join(v.value for v in got if isinstance(v, ContentBody)) == body
