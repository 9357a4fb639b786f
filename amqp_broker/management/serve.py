"""The management HTTP server: uvicorn serving create_app() inside the broker's event loop.

`bind(config)` opens the listening sockets first (Server.run calls it before anything
starts, so a busy port is one clear start-up error); `serve(broker, config, sockets)` is
the task Server.run starts in its task group. uvicorn runs in the same asyncio loop
(handlers read broker state with no locks), without lifespan events or signal handlers
(the broker owns SIGTERM and SIGINT), and stops when the task is cancelled with the
broker: listeners closed, open HTTP connections shut down.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Generator
from typing import Any

import anyio
import uvicorn

from ..broker import Broker
from ..config import Config
from .app import create_app

SHUTDOWN_GRACE = 1  # seconds requests still running at shutdown get to finish
BACKLOG = 128


class ManagementServer(uvicorn.Server):
    """uvicorn's server without its signal handling: the broker decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn versions
        return None


def _socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _family(host: str) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(errno.EADDRNOTAVAIL, f"management listener: cannot resolve {host!r}: "
                                           f"{exc.strerror}") from None
    return infos[0][0]


def bind(config: Config) -> list[socket.socket]:
    """The management listener's sockets on config.address("management"): one for a
    host, else one IPv4 and one IPv6 (v6-only) on every interface, like the AMQP
    listener. OSError naming the listener when the port is busy."""
    host, port = config.address("management")
    if not port:
        return []
    return listen(host, port, "management")


def listen(host: str | None, port: int, what: str) -> list[socket.socket]:
    """Listening sockets for an HTTP listener: one for a host, else IPv4 and IPv6 (v6-only)
    on every interface. OSError naming the listener when the port is busy (on either)."""
    where = f"{host or '[::] and 0.0.0.0'}:{port}"
    try:
        if host:
            return [_socket(_family(host), host, port)]
        v4 = _socket(socket.AF_INET, "0.0.0.0", port)
        try:
            v6 = _socket(socket.AF_INET6, "::", v4.getsockname()[1])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                v4.close()
                raise
            return [v4]  # no IPv6 on this host
        return [v4, v6]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"{what} listener on {where}: {reason}") from None


def port_of(sockets: list[socket.socket]) -> int:
    return int(sockets[0].getsockname()[1]) if sockets else 0


def uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(app, lifespan="off", http="h11", ws="none", interface="asgi3",
                          log_config=None, log_level="warning", access_log=False,
                          server_header=False, proxy_headers=False,
                          timeout_graceful_shutdown=SHUTDOWN_GRACE)


async def serve(broker: Broker, config: Config, sockets: list[socket.socket],
                app: Any = None, server: Any = None) -> None:
    """Serve the management API on the bound sockets until cancelled (then stop); the
    message rates sampler (rates.py) runs alongside. server: the broker's server.Server."""
    if app is None:
        app = create_app(broker, config, server=server)
    async with anyio.create_task_group() as tg:
        rates = _rates_sampler(broker)
        if rates is not None:
            tg.start_soon(rates)
        await _serve_http(broker, config, sockets, app)
        tg.cancel_scope.cancel()


def _rates_sampler(broker: Broker) -> Any:
    try:
        from .rates import rates_for
    except ImportError:  # rates.py not there yet
        return None
    sampler = rates_for(broker)
    return None if sampler.running else sampler.run


async def _serve_http(broker: Broker, config: Config, sockets: list[socket.socket],
                      app: Any) -> None:
    host, _ = config.address("management")
    broker.log.info("management API", host=host or "[::] and 0.0.0.0", port=port_of(sockets))
    await serve_app(app, sockets)


async def serve_app(app: Any, sockets: list[socket.socket]) -> None:
    """Serve an ASGI app with uvicorn on bound sockets until cancelled, then close the
    listeners and the connections still open (without waiting for idle keep-alive ones);
    the sockets are closed in the end. The Prometheus endpoint uses it too."""
    server = ManagementServer(uvicorn_config(app))
    finished = False
    try:
        await server.serve(sockets=sockets)
        finished = True
    finally:
        if not finished and server.started:
            with anyio.CancelScope(shield=True):
                server.force_exit = True
                with anyio.move_on_after(SHUTDOWN_GRACE + 1):
                    await server.shutdown(sockets=sockets)
        for sock in sockets:
            sock.close()
