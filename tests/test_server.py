"""Server-wide pieces of the shell that need no client: malloc tuning, and which
listeners are accepted from directly (plain TCP under asyncio)."""

from __future__ import annotations

import platform
import socket
from typing import Any

import anyio
from anyio.abc import SocketAttribute

from amqp_broker import server


def test_tune_malloc_sets_glibc_thresholds() -> None:
    """On glibc the thresholds are set (mallopt answers 1); elsewhere nothing to do."""
    assert server.tune_malloc() is (platform.libc_ver()[0] == "glibc")


def test_plain_tcp_listeners_are_accepted_from_directly() -> None:
    """A TCP listener under asyncio gives its socket (TransportHandler serves what it
    accepts); a listener without one (a test's fake) is left to its own accept()."""
    class Fake:
        def extra(self, attribute: Any, default: Any = None) -> Any:
            raise LookupError(attribute)

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        try:
            raw = server._raw_listening_socket(listener)
            assert raw is listener.extra(SocketAttribute.raw_socket)
            assert isinstance(raw, socket.socket)
            assert server._raw_listening_socket(Fake()) is None
            assert server._raw_listening_socket(object()) is None
        finally:
            await listener.aclose()
    anyio.run(main, backend="asyncio")
