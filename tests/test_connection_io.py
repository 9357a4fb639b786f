"""The per-connection I/O shell: ConnectionHandler driven over an in-memory byte pipe,
TransportHandler over loopback sockets; every wait bounded by fail_after, no assertion on
elapsed time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from amqp_broker import connection_io
from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.connection_io import ConnectionHandler, TransportHandler
from amqp_broker.storage import MemoryStore

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
WAIT = 5.0  # bound on any one wait; tests take milliseconds


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte pipe, from a loopback peer."""

    def __init__(self, send: MemoryObjectSendStream[bytes],
                 receive: MemoryObjectReceiveStream[bytes]) -> None:
        self.sender = send
        self.receiver = receive

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.receiver.receive()

    async def send(self, item: bytes) -> None:
        await self.sender.send(item)

    async def send_eof(self) -> None:
        await self.sender.aclose()

    async def aclose(self) -> None:
        await self.sender.aclose()
        await self.receiver.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {SocketAttribute.remote_address: lambda: ("127.0.0.1", 40000)}


def pipe() -> tuple[MemoryByteStream, MemoryByteStream]:
    to_broker, broker_in = anyio.create_memory_object_stream[bytes](16)
    to_client, client_in = anyio.create_memory_object_stream[bytes](16)
    return MemoryByteStream(to_client, broker_in), MemoryByteStream(to_broker, client_in)


class Peer:
    """The client's end: pamqp frames out, decoded frames in."""

    def __init__(self, stream: MemoryByteStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, value: Any, channel: int = 0) -> None:
        await self.stream.send(frame.marshal(value, channel))

    async def frame(self) -> tuple[int, Any]:
        while len(self.buffer) < 7 or len(self.buffer) < 8 + int.from_bytes(
                self.buffer[3:7], "big"):
            self.buffer += await self.stream.receive()
        used, channel, value = frame.unmarshal(self.buffer)
        self.buffer = self.buffer[used:]
        return channel, value

    async def expect(self, kind: type, channel: int = 0) -> Any:
        got_channel, value = await self.frame()
        assert isinstance(value, kind) and got_channel == channel, (got_channel, value)
        return value

    async def closed(self) -> bool:
        """True once the broker closed its end (after any frames still in the pipe)."""
        try:
            while True:
                await self.stream.receive()
        except anyio.EndOfStream:
            return True

    async def open(self) -> None:
        await self.stream.send(PROTOCOL_HEADER)
        await self.expect(commands.Connection.Start)
        await self.send(commands.Connection.StartOk(
            mechanism="PLAIN", response="\x00guest\x00guest", locale="en_US"))
        await self.expect(commands.Connection.Tune)
        await self.send(commands.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                   heartbeat=0))
        await self.send(commands.Connection.Open(virtual_host="/"))
        await self.expect(commands.Connection.OpenOk)


def make_handler() -> tuple[ConnectionHandler, Peer, list[str]]:
    """A handler on one end of a pipe; the list records each connection_lost call (with
    the close reason it left)."""
    broker = Broker(Config(data_dir=None, metrics_port=0), MemoryStore())
    broker_end, client_end = pipe()
    handler = ConnectionHandler(broker, broker_end, broker.log)
    lost: list[str] = []
    connection_lost = handler.conn.connection_lost

    def record() -> None:
        connection_lost()
        lost.append(handler.conn.close_reason)
    handler.conn.connection_lost = record  # type: ignore[method-assign]
    return handler, Peer(client_end), lost


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(WAIT):
            await test()
    anyio.run(bounded)


async def serve(handler: ConnectionHandler, client: Callable[[], Awaitable[None]]) -> None:
    """Run the handler and the client side together until both are done."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(handler.run)
        await client()


@pytest.fixture
def quick_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_io, "TIMER_TICK", 0.01)
    monkeypatch.setattr(connection_io, "HANDSHAKE_TIMEOUT", 0.05)
    monkeypatch.setattr(connection_io, "CLOSE_OK_TIMEOUT", 0.05)


def test_peer_closing_ends_the_handler() -> None:
    """The protocol header gets connection.start; the peer closing its end ends the
    handler, which tells the Connection it is lost and closes its socket."""
    handler, peer, lost = make_handler()
    assert (handler.host, handler.port) == ("127.0.0.1", 40000)

    async def client() -> None:
        await peer.stream.send(PROTOCOL_HEADER)
        start = await peer.expect(commands.Connection.Start)
        assert start.version_major == 0 and start.version_minor == 9
        await peer.stream.aclose()

    run(lambda: serve(handler, client))
    assert lost == ["connection lost"] and handler.conn.closed


def test_client_close_gets_close_ok_then_the_socket_closes() -> None:
    """A full handshake, then connection.close: close-ok is flushed before the handler
    closes its end, without the peer having to close first."""
    handler, peer, lost = make_handler()

    async def client() -> None:
        await peer.open()
        assert handler.conn in handler.conn.broker.connections
        await peer.send(commands.Connection.Close(reply_code=200, reply_text="bye",
                                                   class_id=0, method_id=0))
        await peer.expect(commands.Connection.CloseOk)
        assert await peer.closed()

    run(lambda: serve(handler, client))
    assert len(lost) == 1
    assert handler.conn not in handler.conn.broker.connections


@pytest.mark.parametrize("sends", [b"", PROTOCOL_HEADER], ids=["nothing", "header only"])
def test_silent_peer_hits_the_handshake_timeout(quick_timers: None, sends: bytes) -> None:
    handler, peer, lost = make_handler()

    async def client() -> None:
        if sends:
            await peer.stream.send(sends)
            await peer.expect(commands.Connection.Start)
        assert await peer.closed()

    run(lambda: serve(handler, client))
    assert lost == ["handshake timeout"]


def test_close_ok_never_sent_ends_the_connection(quick_timers: None) -> None:
    """The broker closes (shutdown); a peer that never answers close-ok is dropped after
    CLOSE_OK_TIMEOUT."""
    handler, peer, lost = make_handler()

    async def client() -> None:
        await peer.open()
        handler.conn.force_close("broker shutdown")
        close = await peer.expect(commands.Connection.Close)
        assert close.reply_code == 320
        assert await peer.closed()

    run(lambda: serve(handler, client))
    assert lost == ["CONNECTION_FORCED - broker shutdown"]


def test_input_held_during_an_alarm_is_read_once_it_clears() -> None:
    """A publish during a resource alarm holds the connection's input: the reader stops
    reading (what the peer sends next stays in the pipe) until the alarm clears."""
    handler, peer, lost = make_handler()
    broker = handler.conn.broker

    async def client() -> None:
        await peer.open()
        await peer.send(commands.Channel.Open(), 1)
        await peer.expect(commands.Channel.OpenOk, 1)
        broker.set_alarms({"memory"})
        body = b"x"
        await peer.stream.send(b"".join([
            frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere"), 1),
            frame.marshal(header.ContentHeader(0, len(body), commands.Basic.Properties()), 1),
            frame.marshal(ContentBody(body), 1)]))
        while not handler.conn.alarm_blocked:
            await anyio.sleep(0.001)
        await peer.send(commands.Channel.Open(), 2)
        for _ in range(20):
            await anyio.sleep(0)
        assert handler.conn.paused
        assert peer.stream.sender.statistics().current_buffer_used == 1  # not read
        broker.set_alarms(set())
        await peer.expect(commands.Channel.OpenOk, 2)
        await peer.stream.aclose()

    run(lambda: serve(handler, client))
    assert lost == ["connection lost"]


def test_a_refused_login_is_answered_after_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer holds the 403 until the connection's hold time: the shell sleeps the
    rest of AUTH_FAILURE_DELAY before the close goes out (a recorded sleep, no clock)."""
    from amqp_broker import connection
    monkeypatch.setattr(connection, "AUTH_FAILURE_DELAY", 30.0)
    slept: list[float] = []
    real_sleep = anyio.sleep

    async def recorded(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)
    monkeypatch.setattr(connection_io.anyio, "sleep", recorded)
    handler, peer, _lost = make_handler()

    async def client() -> None:
        await peer.stream.send(PROTOCOL_HEADER)
        await peer.expect(commands.Connection.Start)
        assert not any(s > 1 for s in slept)
        await peer.send(commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN", response="\x00guest\x00wrong", locale="en_US"))
        close = await peer.expect(commands.Connection.Close)
        assert close.reply_code == 403
        assert "wrong" not in close.reply_text and "password" not in close.reply_text
        assert any(25 < s <= 30 for s in slept), slept
        await peer.send(commands.Connection.CloseOk())
        assert await peer.closed()
    run(lambda: serve(handler, client))


def test_a_good_login_is_not_held() -> None:
    handler, _peer, _lost = make_handler()
    handler.conn.receive(PROTOCOL_HEADER)
    handler.conn.receive(frame.marshal(commands.Connection.StartOk(
        mechanism="PLAIN", response="\x00guest\x00guest", locale="en_US"), 0))
    assert handler.conn.hold_output_until == 0.0


# --- TransportHandler: plain TCP sockets under asyncio, over real loopback sockets ----

async def transport_handler(**config: Any) -> tuple[TransportHandler, Peer, list[str]]:
    """A TransportHandler on an accepted loopback socket, and the client's end."""
    broker = Broker(Config(data_dir=None, metrics_port=0, **config), MemoryStore())
    loop = asyncio.get_running_loop()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.setblocking(False)
        client = await anyio.connect_tcp("127.0.0.1", listening.getsockname()[1])
        sock, _ = await loop.sock_accept(listening)
    _, handler = await loop.connect_accepted_socket(
        lambda: TransportHandler(broker, broker.log), sock)
    lost: list[str] = []
    connection_lost = handler.conn.connection_lost

    def record() -> None:
        connection_lost()
        lost.append(handler.conn.close_reason)
    handler.conn.connection_lost = record  # type: ignore[method-assign]
    return handler, Peer(client), lost  # type: ignore[arg-type]


def run_transport(test: Callable[[TransportHandler, Peer, list[str]], Awaitable[None]],
                  **config: Any) -> list[str]:
    """Serve one TransportHandler while the test plays the client; the close reasons."""
    reasons: list[str] = []

    async def main() -> None:
        with anyio.fail_after(WAIT):
            handler, peer, lost = await transport_handler(**config)
            async with anyio.create_task_group() as tg:
                tg.start_soon(handler.run)
                try:
                    await test(handler, peer, lost)
                finally:
                    await peer.stream.aclose()
            reasons.extend(lost)
    anyio.run(main, backend="asyncio")
    return reasons


def test_transport_peer_closing_ends_the_handler() -> None:
    async def client(handler: TransportHandler, peer: Peer, lost: list[str]) -> None:
        assert handler.conn.peer is not None and handler.conn.peer[0] == "127.0.0.1"
        await peer.stream.send(PROTOCOL_HEADER)
        await peer.expect(commands.Connection.Start)
        await peer.stream.send_eof()
        await handler.ended.wait()
    assert run_transport(client) == ["connection lost"]


def test_transport_client_close_gets_close_ok_then_the_socket_closes() -> None:
    async def client(handler: TransportHandler, peer: Peer, lost: list[str]) -> None:
        await peer.open()
        await peer.send(commands.Connection.Close(reply_code=200, reply_text="bye",
                                                   class_id=0, method_id=0))
        await peer.expect(commands.Connection.CloseOk)
        assert await peer.closed()
        assert handler.finished
    assert len(run_transport(client)) == 1


def test_transport_silent_peer_hits_the_handshake_timeout(quick_timers: None) -> None:
    async def client(handler: TransportHandler, peer: Peer, lost: list[str]) -> None:
        assert await peer.closed()
    assert run_transport(client) == ["handshake timeout"]


@pytest.mark.parametrize("sizes", [[64 * 1024, 10, 3 * 131072 + 5, 0, 16 * 1024]])
def test_transport_carries_big_and_small_bodies_intact_and_in_order(sizes: list[int]) -> None:
    """Bodies over several frames and of one frame, big and small, published in one
    write: each consumer gets them byte for byte, in order (views, vectored writes)."""
    bodies = [bytes((i * 7 + n) % 251 for i in range(n)) for n in sizes]

    async def client(handler: TransportHandler, peer: Peer, lost: list[str]) -> None:
        await peer.open()
        await peer.send(commands.Channel.Open(), 1)
        await peer.expect(commands.Channel.OpenOk, 1)
        await peer.send(commands.Queue.Declare(queue="big"), 1)
        await peer.expect(commands.Queue.DeclareOk, 1)
        out = []
        for body in bodies:
            out.append(frame.marshal(commands.Basic.Publish(routing_key="big"), 1))
            out.append(frame.marshal(header.ContentHeader(0, len(body),
                                                          commands.Basic.Properties()), 1))
            for start in range(0, len(body), 131072 - 8):
                out.append(frame.marshal(ContentBody(body[start:start + 131072 - 8]), 1))
        await peer.stream.send(b"".join(out))
        await peer.send(commands.Basic.Consume(queue="big", no_ack=True), 1)
        await peer.expect(commands.Basic.ConsumeOk, 1)
        for body in bodies:
            await peer.expect(commands.Basic.Deliver, 1)
            got_header = await peer.expect(header.ContentHeader, 1)
            assert got_header.body_size == len(body)
            got = b""
            while len(got) < len(body):
                got += (await peer.expect(ContentBody, 1)).value
            assert got == body
    run_transport(client)


def test_transport_input_held_during_an_alarm_is_read_once_it_clears() -> None:
    async def client(handler: TransportHandler, peer: Peer, lost: list[str]) -> None:
        broker = handler.conn.broker
        await peer.open()
        await peer.send(commands.Channel.Open(), 1)
        await peer.expect(commands.Channel.OpenOk, 1)
        broker.set_alarms({"memory"})
        await peer.stream.send(b"".join([
            frame.marshal(commands.Basic.Publish(exchange="", routing_key="nowhere"), 1),
            frame.marshal(header.ContentHeader(0, 1, commands.Basic.Properties()), 1),
            frame.marshal(ContentBody(b"x"), 1)]))
        while not handler.conn.alarm_blocked:
            await anyio.sleep(0.001)
        assert handler.transport is not None and not handler.transport.is_reading()
        await peer.send(commands.Channel.Open(), 2)
        broker.set_alarms(set())
        await peer.expect(commands.Channel.OpenOk, 2)
        assert handler.transport.is_reading()
    run_transport(client)


def test_transport_refused_login_is_answered_after_the_delay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The 403 waits for the connection's hold time (a recorded call_later, no clock)."""
    from amqp_broker import connection
    monkeypatch.setattr(connection, "AUTH_FAILURE_DELAY", 30.0)
    delays: list[float] = []

    async def client(handler: TransportHandler, peer: Peer, lost: list[str]) -> None:
        def recorded(delay: float, callback: Callable[[], object]) -> None:
            delays.append(delay)
            handler.loop.call_soon(callback)
        handler.loop = cast(Any, _LoopProxy(handler.loop, recorded))
        await peer.stream.send(PROTOCOL_HEADER)
        await peer.expect(commands.Connection.Start)
        assert delays == []
        await peer.send(commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN", response="\x00guest\x00wrong", locale="en_US"))
        close = await peer.expect(commands.Connection.Close)
        assert close.reply_code == 403
        assert len(delays) == 1 and 25 < delays[0] <= 30, delays
    run_transport(client)


class _LoopProxy:
    """The event loop, with call_later replaced."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 call_later: Callable[[float, Callable[[], object]], None]) -> None:
        self._loop = loop
        self.call_later = call_later

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)
