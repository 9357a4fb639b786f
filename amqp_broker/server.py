"""The I/O shell: sockets, timers and signals around the sans-IO core.

Server accepts sockets (counted against the descriptor limit) and runs the
broker-wide tasks: the store's group commit, the resource alarm loop, and the
signal handler for a clean shutdown. Each connection is handed to a handler of
connection_io: a plain TCP socket under asyncio (as `run` starts the broker), accepted
here from the listening socket itself, to a TransportHandler (asyncio protocol
callbacks); any other stream (TLS, trio) to a ConnectionHandler (reader and writer
tasks).

With tls_port set, a second (amqps) listener feeds the same accept loop; its sockets go
through a TLS handshake, bounded by tls.HANDSHAKE_TIMEOUT, before they get a
ConnectionHandler. Plain sockets are handed over as they are: no TLS layer, no extra
work per read.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.stapled import MultiListener
from anyio.streams.tls import TLSAttribute, TLSStream

from . import tls
from .alarms import trim_memory
from .broker import Broker
from .config import Config
from .connection import Connection, ConnState
from .connection_io import IO_ERRORS, ConnectionHandler, TransportHandler, peer_of
from .identity import peer_name
from .storage import MemoryStore, MessageStore

# accept() failing for want of descriptors or memory: wait this long before trying again
ACCEPT_RETRY_DELAY = 0.1
_ACCEPT_SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def max_connections_for(fd_limit: int) -> int:
    """Sockets allowed at once for a descriptor limit, as RabbitMQ 3.x's file handle cache
    reckons it: 100 descriptors kept for everything else, 90% of the rest for sockets."""
    return max(1, int((fd_limit - 100) * 0.9) + 1)


def fd_limit() -> int:
    try:
        import resource
    except ImportError:  # no rlimits: assume the common default
        return 1024
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft before, soft now)."""
    try:
        import resource
    except ImportError:
        return 1024, 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:  # Linux caps it at fs.nr_open; ask for plenty
        target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            try:  # e.g. macOS refuses more than OPEN_MAX, Linux more than nr_open
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, 65536), hard))
            except (ValueError, OSError):
                pass
    return soft, fd_limit()


def open_store(config: Config) -> MessageStore:
    if not config.data_dir:
        return MemoryStore()
    from .storage.disk import DiskStore
    return DiskStore(config.data_dir)


class Server:
    def __init__(self, config: Config, store: MessageStore | None = None,
                 handle_signals: bool = True) -> None:
        self.config = config
        self.handle_signals = handle_signals  # False when embedded (amqp_broker.testing)
        self.shutdown_grace = 2.0  # seconds closing connections get to answer close-ok
        self.broker = Broker(config, store if store is not None else open_store(config))
        self.log = self.broker.log
        self.port = config.port
        # the amqps listener's context, built (and its files checked) before anything starts
        self.tls_context = tls.server_context(config) if tls.enabled(config) else None
        self.tls_port: int | None = None  # the amqps port once listening
        self.management_port: int | None = None  # the management API's port once listening
        self._stopping = False
        self._stop = anyio.Event()
        self.max_connections = max_connections_for(fd_limit())
        self.sockets = 0  # accepted sockets not yet closed (handshaking ones too)
        self._refusing = False  # at max_connections: new sockets are closed at once
        self._accept_failing = False  # accept() fails for want of descriptors

    async def run(self, ready: Callable[[Server], Any] | None = None) -> None:
        summary = self.broker.recover()
        self.log.info("recovered", data_dir=self.config.data_dir, **summary)
        listener = await self._listen(self.config.host, self.config.port)
        self.port = listener.extra(SocketAttribute.local_port)
        listeners: list[tuple[Listener[SocketStream], ssl.SSLContext | None]] = [
            (listener, None)]
        if self.tls_context is not None:
            try:
                tls_listener = await self._listen(self._tls_host(), self.config.tls_port or 0)
            except BaseException:
                await listener.aclose()
                raise
            self.tls_port = tls_listener.extra(SocketAttribute.local_port)
            listeners.append((tls_listener, self.tls_context))
        management_sockets: list[Any] = []
        if self.config.management_port:
            try:  # bound now: a busy port is a start-up error, before "listening"
                try:
                    from .management import serve as management
                except ImportError as exc:  # one line at start-up, not a traceback
                    raise OSError(f"the management API cannot start: {exc} (install "
                                  "amqp-broker's dependencies, or --management-port 0)"
                                  ) from None
                management_sockets = management.bind(self.config)
            except BaseException:
                for one, _ in listeners:
                    await one.aclose()
                raise
            self.management_port = management.port_of(management_sockets)
        self._stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.broker.store.run)
            tg.start_soon(self.broker.delayed.run)
            tg.start_soon(self._alarm_loop)
            tg.start_soon(self._redispatch_loop)
            if self.handle_signals:
                tg.start_soon(self._signals)
            if management_sockets:
                tg.start_soon(management.serve, self.broker, self.config, management_sockets,
                              None, self)
            if self.config.metrics_port:
                from . import metrics_http
                tg.start_soon(metrics_http.serve, self.broker, self.config)
            accepting = anyio.CancelScope()
            stopped_accepting = anyio.Event()

            async def accept() -> None:
                # this task owns the listeners: cancelling it stops accepting, then closes
                try:
                    with accepting:
                        async with anyio.create_task_group() as serving:
                            for one, context in listeners:
                                serving.start_soon(self._serve, one, tg, context)
                finally:
                    with anyio.CancelScope(shield=True):
                        for one, _ in listeners:
                            await one.aclose()
                    stopped_accepting.set()
            tg.start_soon(accept)
            amqps: dict[str, Any] = {}
            if self.tls_port is not None:
                amqps["amqps_port"] = self.tls_port
                if self._tls_host() != self.config.host:
                    amqps["amqps_host"] = self._tls_host() or "[::] and 0.0.0.0"
            if self.management_port:
                amqps["management_port"] = self.management_port
            self.log.info("listening", host=self.config.host or "[::] and 0.0.0.0", port=self.port,
                          **amqps,
                          data_dir=(os.path.abspath(self.config.data_dir)
                                    if self.config.data_dir else "none (in memory)"),
                          pid=os.getpid(), max_connections=self.max_connections,
                          users=len(self.broker.access.users),
                          vhosts=",".join(sorted(self.broker.vhosts)))
            if ready is not None:
                ready(self)
            await self._stop.wait()
            self._stopping = True
            accepting.cancel()
            await stopped_accepting.wait()
            await self._shutdown_connections()
            tg.cancel_scope.cancel()
        self.broker.delayed.close()
        self.broker.store.close()
        self.broker.close_spools()
        self.log.info("stopped")

    def _tls_host(self) -> str:
        """The amqps listener's address: tls_host, else the plain listener's."""
        host = self.config.tls_host
        return self.config.host if host is None else host

    async def _listen(self, host: str, port: int) -> Listener[SocketStream]:
        """A listener (amqp or amqps): on host, or, without one, dual-stack like RabbitMQ's
        default (every IPv4 and IPv6 interface). Two sockets (the IPv6 one v6-only), so
        IPv4 peers keep their plain addresses; IPv4 alone if the host has no IPv6."""
        if host:
            return await anyio.create_tcp_listener(local_host=host, local_port=port)
        for _attempt in range(5):
            v4 = await anyio.create_tcp_listener(local_host="0.0.0.0", local_port=port)
            port = v4.extra(SocketAttribute.local_port)
            try:
                v6 = await anyio.create_tcp_listener(local_host="::", local_port=port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    self.log.warning("no IPv6, listening on IPv4 only", error=str(exc))
                    return v4
                await v4.aclose()
                if port:
                    raise
                continue  # the ephemeral port is taken on IPv6: pick another
            return MultiListener([v4, v6])
        raise OSError(errno.EADDRINUSE, "no port free on both IPv4 and IPv6")

    # --- accepting ----------------------------------------------------------
    async def _serve(self, listener: Listener[SocketStream], tg: TaskGroup,
                     tls_context: ssl.SSLContext | None = None) -> None:
        """Accept on every socket of the listener (both of a dual-stack one); with a TLS
        context, each accepted socket does a TLS handshake first."""
        listeners = listener.listeners if isinstance(listener, MultiListener) else [listener]
        async with anyio.create_task_group() as accepting:
            for one in listeners:
                accepting.start_soon(self._accept_loop, cast(SocketListener, one), tg,
                                     tls_context)

    async def _accept_loop(self, listener: SocketListener, tg: TaskGroup,
                           tls_context: ssl.SSLContext | None = None) -> None:
        """Accept connections until cancelled; unlike anyio's listener.serve, an accept()
        that fails (no descriptors left, the peer gone already) never ends it. Beyond
        max_connections sockets are closed as soon as accepted, so the descriptors
        left serve the connections that exist; each episode is logged once."""
        raw = _raw_listening_socket(listener) if tls_context is None else None
        while True:
            try:
                stream: Any = (await listener.accept() if raw is None
                               else await _accept_socket(raw))
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # this one peer gave up before it was accepted
                if not self._accept_failing:
                    self._accept_failing = True
                    self.log.warning("cannot accept connections, pausing accepts",
                                     error=str(exc), connections=self.sockets,
                                     max_connections=self.max_connections,
                                     fd_limit=fd_limit())
                await anyio.sleep(ACCEPT_RETRY_DELAY if exc.errno in _ACCEPT_SHORTAGE
                                  else 1.0)
                continue
            if self._accept_failing:
                self._accept_failing = False
                self.log.info("accepting connections again", connections=self.sockets)
            if self.sockets >= self.max_connections:
                if not self._refusing:
                    self._refusing = True
                    self.log.warning("connection limit reached, refusing new connections",
                                     connections=self.sockets,
                                     max_connections=self.max_connections,
                                     fd_limit=fd_limit())
                if isinstance(stream, socket.socket):
                    stream.close()
                else:
                    with anyio.CancelScope(shield=True):
                        await stream.aclose()
                continue
            if self._refusing:
                self._refusing = False
                self.log.info("below the connection limit, accepting connections again",
                              connections=self.sockets, max_connections=self.max_connections)
            self.sockets += 1
            if tls_context is None:
                tg.start_soon(self._serve_socket, stream)
            else:
                tg.start_soon(self._serve_tls_socket, stream, tls_context)

    async def _serve_socket(self, stream: SocketStream | socket.socket) -> None:
        try:
            if isinstance(stream, socket.socket):
                await self._handle_socket(stream)
            else:
                await self._handle(stream)
        finally:
            self.sockets -= 1

    async def _serve_tls_socket(self, stream: SocketStream, context: ssl.SSLContext) -> None:
        try:
            tls_stream = await self._tls_handshake(stream, context)
            if tls_stream is not None:
                await self._handle(tls_stream, tls_session=self._tls_session(tls_stream))
        finally:
            self.sockets -= 1

    async def _tls_handshake(self, stream: SocketStream,
                             context: ssl.SSLContext) -> TLSStream | None:
        """The TLS stream once the handshake is done; None, the socket closed, if it fails
        or takes longer than tls.HANDSHAKE_TIMEOUT. Logged once with the peer, as RabbitMQ
        does: a failure or timeout as an error, a client that does not speak TLS as a
        warning, a peer that just closes (a TCP health check) only at debug level."""
        host, port = peer_of(stream)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        ssl_object = context.wrap_bio(incoming, outgoing, server_side=True)
        done = False
        try:
            with anyio.fail_after(tls.HANDSHAKE_TIMEOUT):
                await _handshake(stream, ssl_object, incoming, outgoing)
            done = True
            # anyio's TLS stream over the finished handshake (what TLSStream.wrap builds,
            # but wrap drops the alert that tells a refused client why)
            return TLSStream(transport_stream=stream, standard_compatible=False,
                             _ssl_object=ssl_object, _read_bio=incoming, _write_bio=outgoing)
        except _NotTLS:
            self.log.warning("client is connecting to the amqps listener without using TLS",
                             peer=peer_name((host, port)))
            return None
        except TimeoutError:
            error = f"no TLS handshake within {tls.HANDSHAKE_TIMEOUT:g}s"
        except ssl.SSLError as exc:
            if _peer_closed(exc):
                self.log.debug("connection closed during the TLS handshake",
                               peer=peer_name((host, port)))
                return None
            error = _ssl_error_text(exc)
        except IO_ERRORS as exc:
            self.log.debug("connection closed during the TLS handshake",
                           peer=peer_name((host, port)), error=str(exc) or type(exc).__name__)
            return None
        finally:
            if not done:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
        self.log.error("TLS handshake failed", peer=peer_name((host, port)), error=error)
        return None

    def _tls_session(self, stream: TLSStream) -> tls.TLSSession:
        return tls.session_of(
            der=stream.extra(TLSAttribute.peer_certificate_binary, None),
            peer_cert=stream.extra(TLSAttribute.peer_certificate, None),
            protocol=stream.extra(TLSAttribute.tls_version, None),
            cipher=stream.extra(TLSAttribute.cipher, None),
            verify_peer=self.config.tls_verify_peer, mode=self.config.ssl_cert_login_from)

    def stop(self) -> None:
        """Ask the server to shut down; call from the event loop's thread."""
        self._stop.set()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.log.info("shutting down", signal=signal.Signals(signum).name)
                self.stop()
                return

    async def _shutdown_connections(self) -> None:
        conns = [c for c in self.broker.connections if isinstance(c, Connection)]
        for conn in conns:
            conn.force_close("broker shutdown")
        deadline = time.monotonic() + self.shutdown_grace
        while time.monotonic() < deadline and any(
                c.state is ConnState.CLOSING or c.out_size for c in conns):
            await anyio.sleep(0.05)

    async def _redispatch_loop(self) -> None:
        """Continue dispatches that stopped at their read budget, after other tasks ran."""
        wanted = [anyio.Event()]
        self.broker.on_redispatch = lambda: wanted[0].set()
        while True:
            await wanted[0].wait()
            wanted[0] = anyio.Event()
            await anyio.sleep(0)
            self.broker.run_redispatch()

    # --- alarms: publishers stop being read while memory or disk is short ----
    async def _alarm_loop(self) -> None:
        broker = self.broker
        memory = broker.memory_alarm
        while True:
            await anyio.sleep(0.25)
            broker.sweep(time.monotonic())
            held = broker.memory_held()
            broker.set_spool_all(held > memory.watermark // 2)  # queues: backlogs to disk
            rss = _rss()
            if memory.wants_trim(held, rss):
                trim_memory()  # freed bodies back to the OS, so RSS can fall too
                rss = _rss()
                memory.trimmed(held, rss)
            alarms: set[str] = set()
            if memory.update(held, rss):
                alarms.add("memory")
            if broker.store.failed or self._disk_low():
                alarms.add("disk")
            if alarms != broker.alarms:
                self._set_alarms(alarms, held=held, rss=rss)

    def _disk_low(self) -> bool:
        limit = self.config.disk_free_limit
        if not limit or not self.config.data_dir:
            return False
        try:
            st = os.statvfs(self.config.data_dir)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < limit

    def _set_alarms(self, alarms: set[str], held: int, rss: int | None) -> None:
        memory = self.broker.memory_alarm
        self.broker.set_alarms(alarms, held_bytes=held, rss_bytes=rss,
                               watermark=memory.watermark, rss_limit=memory.rss_limit)

    # --- one connection -----------------------------------------------------
    async def _handle(self, stream: ByteStream,
                      tls_session: tls.TLSSession | None = None) -> None:
        if self._stopping:
            await stream.aclose()
            return
        await ConnectionHandler(self.broker, stream, self.log, tls_session).run()

    async def _handle_socket(self, sock: socket.socket) -> None:
        """A plain TCP socket: an asyncio protocol reads and writes it (TransportHandler)."""
        if self._stopping:
            sock.close()
            return
        loop = asyncio.get_running_loop()
        try:
            _transport, handler = await loop.connect_accepted_socket(
                lambda: TransportHandler(self.broker, self.log), sock)
        except OSError:
            sock.close()
            return
        await handler.run()


async def _handshake(stream: ByteStream, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO,
                     outgoing: ssl.MemoryBIO) -> None:
    """A server-side TLS handshake over memory BIOs. When it fails, the alert OpenSSL
    wrote (certificate required, unknown CA, ...) is still sent, briefly, so the client
    learns why. _NotTLS if the first byte is not a TLS handshake record's (0x16)."""
    first = True
    while True:
        try:
            ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            pending = outgoing.read()
            if pending:
                await stream.send(pending)
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                incoming.write_eof()
                continue
            if first and data[0] != 0x16:
                raise _NotTLS from None
            first = False
            incoming.write(data)
        except ssl.SSLError:
            pending = outgoing.read()
            if pending:
                with anyio.move_on_after(1.0):
                    try:
                        await stream.send(pending)
                    except IO_ERRORS:
                        pass
            raise
        else:
            pending = outgoing.read()
            if pending:
                await stream.send(pending)
            return


class _NotTLS(Exception):
    """The client's first bytes on the amqps listener are not TLS (plain AMQP, say)."""


def _peer_closed(exc: ssl.SSLError) -> bool:
    return (isinstance(exc, ssl.SSLEOFError)
            or getattr(exc, "reason", None) == "UNEXPECTED_EOF_WHILE_READING")


def _ssl_error_text(exc: ssl.SSLError) -> str:
    """An OpenSSL error as a short phrase: "peer did not return a certificate"."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if reason:
        return str(reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__


def _raw_listening_socket(listener: Any) -> socket.socket | None:
    """The listening socket of a plain TCP listener under asyncio, accepted from directly
    (_accept_socket) so a TransportHandler drives each connection; None otherwise (trio,
    a test's listener), and the listener's own accept() serves."""
    try:
        import sniffio
        if sniffio.current_async_library() != "asyncio":
            return None
        raw = listener.extra(SocketAttribute.raw_socket)
    except Exception:
        return None
    if not isinstance(raw, socket.socket) or raw.family not in (socket.AF_INET,
                                                                 socket.AF_INET6):
        return None
    return raw


async def _accept_socket(raw: socket.socket) -> socket.socket:
    """One accepted connection's socket (what anyio's TCP listener does before it wraps
    the socket in a stream)."""
    loop = asyncio.get_running_loop()
    try:
        sock, _addr = await loop.sock_accept(raw)
    except asyncio.CancelledError:
        try:  # a cancelled sock_accept leaves its reader behind (bpo-41317)
            loop.remove_reader(raw)
        except (ValueError, NotImplementedError):
            pass
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    """This process's resident set size in bytes (None where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


# glibc malloc: allocations up to this size come from the heap, not fresh mmap()s, and the
# heap's top is given back to the OS only past TRIM_THRESHOLD free bytes. glibc's own
# thresholds (dynamic, a few MB at most) make every big body's buffers fresh pages: with
# 1 MiB messages and a queue that grows and shrinks, page faults cost more than all the
# copies together. The memory alarm still trims explicitly when it needs RSS back
# (alarms.trim_memory).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds (MMAP_THRESHOLD, TRIM_THRESHOLD); False
    where there is no glibc (nothing to tune)."""
    try:
        import ctypes
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def run(config: Config) -> None:
    """Run the broker until SIGTERM/SIGINT (uvloop when installed)."""
    tune_malloc()
    before, limit = raise_fd_limit()
    server = Server(config)
    raised = {"raised_from": before} if before != limit else {}
    server.log.info("file descriptors", limit=limit, **raised,
                    max_connections=server.max_connections)
    try:
        import uvloop  # noqa: F401
        options: dict[str, Any] = {"use_uvloop": True}
    except ImportError:
        options = {}
    anyio.run(server.run, backend="asyncio", backend_options=options)
