"""Per-connection I/O: a client socket around its sans-IO Connection.

TransportHandler serves a plain TCP socket under asyncio (what `server.run` uses): asyncio
protocol callbacks hand each read to Connection.receive and write what it queued in one
vectored write. ConnectionHandler serves any other anyio byte stream (TLS, trio, tests'
pipes) with a reader task and a writer task. Both run the same timer task for
heartbeats and the handshake and close-ok timeouts (_Timers). Server (server.py) accepts
the sockets and hands each to one of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup

from . import tls
from .broker import Broker
from .connection import Connection, ConnState

HANDSHAKE_TIMEOUT = 10.0
CLOSE_OK_TIMEOUT = 3.0
# the most one read of a ConnectionHandler takes: above the event loop's own read buffer
# (uvloop reads up to 256 KiB at a time), so anyio never splits a chunk it has, which
# copies the rest of it each time
READ_SIZE = 1024 * 1024
TIMER_TICK = 1.0  # how often a connection's timer task looks (a quarter heartbeat if sooner)
IO_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
              OSError)


class _Timers:
    """The timer task both handlers run: heartbeats out, and the end of a connection
    that missed the client's, or stays in its handshake or waits for close-ok too long."""

    conn: Connection
    log: Any
    opened_at: float
    last_sent: float
    closing_since: float

    async def timer_loop(self) -> None:
        conn = self.conn
        while True:
            await anyio.sleep(TIMER_TICK if not conn.heartbeat
                              else min(TIMER_TICK, conn.heartbeat / 4))
            now = time.monotonic()
            if conn.state is ConnState.CLOSING:
                self.closing_since = self.closing_since or now
                if now - self.closing_since > CLOSE_OK_TIMEOUT:
                    return
            elif conn.state is not ConnState.OPEN and now - self.opened_at > HANDSHAKE_TIMEOUT:
                conn.close_reason = "handshake timeout"
                return
            if conn.heartbeat_expired(now) and not conn.input_stalled:
                conn.close_reason = (f"missed heartbeats from client, timeout: "
                                     f"{conn.heartbeat}s")
                self.log.warning("heartbeat timeout", peer=self.conn.peer_label,
                                 user=conn.user)
                return
            if conn.heartbeat_due(now, self.last_sent):
                conn.send_heartbeat()


class ConnectionHandler(_Timers):
    """One client socket around its sans-IO Connection (the model: hypercorn's
    TCPServer). The shell only reads, writes and owns the timers: read_loop feeds
    Connection.receive, write_loop sends what the connection queued as one buffer,
    timer_loop sends heartbeats and ends a connection that missed them, or that
    stays in its handshake or waits for close-ok too long. run() owns the three
    tasks and the teardown."""

    def __init__(self, broker: Broker, stream: ByteStream, log: Any,
                 tls_session: tls.TLSSession | None = None) -> None:
        self.stream = stream
        self.log = log
        self.host, self.port = peer_of(stream)
        self.output_queued = anyio.Event()  # the connection queued output
        self.input_resumed = anyio.Event()  # input it held may be read again
        self.conn = Connection(broker, (self.host, self.port), on_output=self._wake_writer)
        self.conn.local = local_of(stream)
        self.conn.on_resume = self._wake_reader
        if tls_session is not None:
            self.conn.use_tls(tls_session)
        self.opened_at = time.monotonic()
        self.last_sent = self.opened_at  # heartbeats are due after a quiet half interval
        self.closing_since = 0.0  # when the timer first saw the connection CLOSING

    def _wake_writer(self) -> None:
        self.output_queued.set()

    def _wake_reader(self) -> None:
        self.input_resumed.set()

    async def run(self) -> None:
        """Serve the connection until it ends, then tell the Connection it is gone,
        send what that queued (briefly) and close the socket."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_done, tg, self.write_loop, True)
                tg.start_soon(self._until_done, tg, self.timer_loop, True)
                tg.start_soon(self._until_done, tg, self.read_loop, False)
        finally:
            self.conn.connection_lost()
            with anyio.CancelScope(shield=True):
                try:
                    data = self.conn.take_output()
                    if data:
                        with anyio.move_on_after(1.0):
                            await self.stream.send(data)
                except IO_ERRORS:
                    pass
                await self.stream.aclose()

    @staticmethod
    async def _until_done(tg: TaskGroup, loop: Callable[[], Awaitable[None]],
                          ends_connection: bool) -> None:
        """Run one loop; the writer or the timer returning, or any loop's socket
        failing, ends the connection. The reader returning (the connection closed)
        leaves the end to the writer, once the last frames are out."""
        try:
            await loop()
        except IO_ERRORS:
            ends_connection = True
        if ends_connection:
            tg.cancel_scope.cancel()

    async def read_loop(self) -> None:
        conn = self.conn
        while not conn.closed:
            data = await self.stream.receive(READ_SIZE)
            conn.receive(data)
            # input held (a durable reply waits for the disk, a resource alarm, output
            # over its cap): read no further, the peer's TCP window fills up
            while conn.paused:
                if conn.routing is not None:  # a long topic match: a slice, then others
                    await anyio.sleep(0)
                    conn.continue_routing()
                    continue
                await self.input_resumed.wait()
                self.input_resumed = anyio.Event()
        self._wake_writer()  # the writer flushes the last frames, then ends the connection

    async def write_loop(self) -> None:
        conn = self.conn
        while True:
            await self.output_queued.wait()
            self.output_queued = anyio.Event()
            if conn.hold_output_until:  # a refused login: its answer waits a little
                delay = conn.hold_output_until - time.monotonic()
                conn.hold_output_until = 0.0
                if delay > 0:
                    await anyio.sleep(delay)
            data = conn.take_output()  # counted as in flight until drained()
            if data:
                await self.stream.send(data)
                self.last_sent = time.monotonic()
            conn.drained()
            if conn.closed and not conn.out_size:
                return


class TransportHandler(asyncio.Protocol, _Timers):
    """One plain TCP socket, driven by the event loop's callbacks instead of tasks: each
    read is handed to Connection.receive at once, and what it queued goes
    out in one vectored write (writelines: writev under uvloop) once the read's
    callbacks ran, big bodies without being copied. The kernel's buffer is the only
    output buffer: past it writing pauses, and until it drains the connection's output
    counts as in flight (Connection.drained once it is). Only the timers are a task
    (run)."""

    def __init__(self, broker: Broker, log: Any) -> None:
        self.broker = broker
        self.log = log
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.conn: Connection = None  # type: ignore[assignment]  # set in connection_made
        self.ended = anyio.Event()
        self.finished = False
        self.writing_paused = False
        self.routing_scheduled = False
        self.opened_at = self.last_sent = time.monotonic()
        self.closing_since = 0.0

    # --- asyncio protocol callbacks ------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # paused as soon as anything is left over after a write, resumed once it all went
        self.transport.set_write_buffer_limits(high=0)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
        self.conn = Connection(self.broker, (host, port), on_output=self._output_queued)
        self.conn.local = (local[0], local[1]) if isinstance(local, tuple) else None
        self.conn.on_resume = self._resume_reading

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive(data)
        if conn.closed:
            self._stop_reading()
            self.loop.call_soon(self._flush)  # the last frames, then the end
        elif conn.paused:
            self._stop_reading()
            if conn.routing is not None and not self.routing_scheduled:
                self.routing_scheduled = True
                self.loop.call_soon(self._continue_routing)
        else:
            # one read per turn of the loop: the event loop would read a busy publisher
            # again and again (libuv: up to 32 reads), the writes its messages cause
            # waiting behind; a turn lets them (and other connections) go first
            self.transport.pause_reading()  # type: ignore[union-attr]
            self.loop.call_soon(self._read_again)

    def eof_received(self) -> bool:
        self._end()
        return True  # _end closes the transport once the last frames are handed over

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.finished:
            self.conn.drained()
            self.loop.call_soon(self._flush)

    # --- output ----------------------------------------------------------------
    def _output_queued(self) -> None:
        # Connection calls this once per take: the write follows the callbacks ready now
        self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        conn = self.conn
        transport = self.transport
        if self.finished or self.writing_paused or transport is None:
            return
        if conn.hold_output_until:  # a refused login: its answer waits a little
            delay = conn.hold_output_until - time.monotonic()
            conn.hold_output_until = 0.0
            if delay > 0:
                self.loop.call_later(delay, self._flush)
                return
        parts = conn.take_parts()
        if parts:
            transport.writelines(parts)  # pause_writing() is called now if some is left
            self.last_sent = time.monotonic()
        if not self.writing_paused:
            conn.drained()
            if conn.closed and not conn.out_size:
                self._end()

    # --- input -----------------------------------------------------------------
    def _stop_reading(self) -> None:
        if self.transport is not None and not self.finished:
            self.transport.pause_reading()

    def _read_again(self) -> None:
        if not self.conn.paused:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.finished and not self.conn.closed:
            self.transport.resume_reading()

    def _continue_routing(self) -> None:
        """One slice of a long topic match (Connection.route_later), then other callbacks."""
        self.routing_scheduled = False
        conn = self.conn
        if self.finished or conn.routing is None:
            return
        conn.continue_routing()  # reading resumes through on_resume once nothing holds it
        if conn.routing is not None:
            self.routing_scheduled = True
            self.loop.call_soon(self._continue_routing)

    # --- the end ---------------------------------------------------------------
    async def run(self) -> None:
        """Run the timers until the connection ends (either side, or a timer)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._timers)
                await self.ended.wait()
                tg.cancel_scope.cancel()
        finally:
            self._end()

    async def _timers(self) -> None:
        await self.timer_loop()
        self._end()

    def _end(self) -> None:
        """Tell the Connection the socket is gone, hand over what that queued, close
        (briefly: a peer that reads nothing more is cut off after a second)."""
        if self.finished:
            return
        self.finished = True
        self.conn.connection_lost()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            parts = self.conn.take_parts()
            if parts:
                transport.writelines(parts)
            transport.close()
            if transport.get_write_buffer_size():
                self.loop.call_later(1.0, transport.abort)
        self.ended.set()


def local_of(stream: ByteStream) -> tuple[str, int] | None:
    """(host, port) this end of the connection is bound to; None when unknown."""
    try:
        local = stream.extra(SocketAttribute.local_address)
    except Exception:
        return None
    return (local[0], local[1]) if isinstance(local, tuple) else None


def peer_of(stream: ByteStream) -> tuple[str, int]:
    """(host, port) of the peer; ("?", 0) when the stream cannot tell."""
    try:
        peer = stream.extra(SocketAttribute.remote_address)
    except Exception:
        peer = ("?", 0)
    return (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
