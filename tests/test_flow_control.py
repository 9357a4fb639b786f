"""Back-pressure: a consumer that stops reading stops receiving, and publishers are
blocked (connection.blocked, then no longer read) while memory is short."""

from __future__ import annotations

import socket
import time
from typing import Any

from pamqp import commands, frame, header
from pamqp.body import ContentBody

from tests.helpers import RawClient, pika_connect


def _publish_frames(queue: str, body: bytes, count: int) -> bytes:
    one = (frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
           + frame.marshal(header.ContentHeader(0, len(body), commands.Basic.Properties()), 1)
           + frame.marshal(ContentBody(body), 1))
    return one * count


class Pusher:
    """Sends one chunk over and over, keeping the frame stream whole across stalls
    (sendall loses track of how much of a chunk went out when it times out)."""

    def __init__(self, sock: socket.socket, chunk: bytes) -> None:
        self.sock = sock
        self.view = memoryview(chunk)
        self.pos = 0
        self.sent = 0  # whole chunks sent

    def push(self, chunks: int, stall: float) -> bool:
        """Send up to `chunks` whole chunks; True when the broker read nothing for
        `stall` seconds (it stopped reading this connection)."""
        self.sock.settimeout(stall)
        done = 0
        while done < chunks:
            try:
                self.pos += self.sock.send(self.view[self.pos:])
            except TimeoutError:
                return True
            if self.pos == len(self.view):
                self.pos = 0
                done += 1
                self.sent += 1
        return False


def test_consumer_that_stops_reading_stops_receiving(broker: Any, uid: str) -> None:
    queue = f"slow-{uid}"
    conn = pika_connect(broker.port)
    ch = conn.channel()
    ch.queue_declare(queue)
    # a no-ack consumer (no prefetch limit applies) that never reads its socket
    with RawClient(broker.port) as slow:
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.handshake()
        slow.open_channel()
        slow.send(commands.Basic.Consume(queue=queue, no_ack=True), 1)
        body = b"x" * 1024
        for _ in range(20_000):
            ch.basic_publish("", queue, body)
        # 20 MB published; the broker may buffer about a megabyte for the socket plus
        # what the kernel holds, the rest must stay in the queue
        deadline = time.monotonic() + 10
        count = 0
        while time.monotonic() < deadline:
            count = ch.queue_declare(queue, passive=True).method.message_count
            if count:
                break
            time.sleep(0.1)
        assert count > 10_000, f"only {count} of 20000 messages held back"
    ch.queue_delete(queue)
    conn.close()


def test_publishers_blocked_by_memory_alarm(broker_factory: Any, uid: str) -> None:
    b = broker_factory("--memory-high-watermark", str(120 * 1024 * 1024))
    blocked: list[Any] = []
    conn = pika_connect(b.port)
    conn.add_on_connection_blocked_callback(lambda _c, frame_: blocked.append(frame_))
    ch = conn.channel()
    queue = f"flood-{uid}"
    # a priority queue keeps its backlog in RAM (a FIFO queue would spool it to disk)
    ch.queue_declare(queue, arguments={"x-max-priority": 1})
    with RawClient(b.port) as flood:
        flood.handshake()
        flood.open_channel()
        pusher = Pusher(flood.sock, _publish_frames(queue, b"y" * 4096, 1000))  # 4 MB a chunk
        # at most 400 MB; the broker stops reading this publisher long before
        pusher.push(100, 2.0)
        # as RabbitMQ, connection.blocked goes to a connection when it publishes
        ch.basic_publish("", queue, b"during the alarm")
        deadline = time.monotonic() + 10
        while not blocked and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        assert blocked, "no connection.blocked after flooding past the memory watermark"
        # 200 MB more: the broker must stop reading long before
        assert pusher.push(50, 2.0), "the broker kept reading a blocked publisher"
        rss_kb = int(next(line.split()[1] for line in open(f"/proc/{b.pid}/status")
                          if line.startswith("VmRSS")))
        assert rss_kb < 400 * 1024, f"broker RSS {rss_kb} kB kept growing"
