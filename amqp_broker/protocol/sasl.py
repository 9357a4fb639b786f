"""Login responses of the SASL mechanisms a client may choose in connection.start-ok.

PLAIN and AMQPLAIN, read exactly as RabbitMQ 3.x reads them, and EXTERNAL (the
login is the client certificate's name; its response is not read). A mechanism
not offered, or a response it cannot read, is a handshake error (ValueError with
the reason), which the connection logs once and answers by closing the socket.
"""

from __future__ import annotations

import struct

from .errors import AMQPError
from .fieldtable import decode_table

MECHANISMS = b"PLAIN AMQPLAIN"
PASSWORD_MECHANISMS = ("PLAIN", "AMQPLAIN")
EXTERNAL = "EXTERNAL"


def offered(configured: tuple[str, ...], tls: bool) -> tuple[str, ...]:
    """The mechanisms connection.start lists: the configured ones this broker knows,
    EXTERNAL only on a TLS connection (as rabbit_auth_mechanism_ssl offers it)."""
    return tuple(m for m in configured
                 if m in PASSWORD_MECHANISMS or (m == EXTERNAL and tls))


def login(mechanism: str, response: bytes) -> tuple[bytes, bytes]:
    """(user, password) from a start-ok response, read as RabbitMQ reads it; ValueError
    with the reason when the response (or the mechanism) is not one it accepts."""
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise ValueError("PLAIN response invalid (expected \\0user\\0password)")
        if parts[0]:
            # an authorization identity: RabbitMQ has none, and refuses even the user's own
            raise ValueError("PLAIN response invalid: authorization identity "
                             f"{parts[0].decode('utf-8', 'replace')!r} not supported")
        return parts[1], parts[2]
    if mechanism == "AMQPLAIN":
        try:
            table, _ = decode_table(struct.pack(">I", len(response)) + response, 0)
        except AMQPError:
            raise ValueError("AMQPLAIN response is not a field table") from None
        except RecursionError:
            raise ValueError("AMQPLAIN response nested too deep") from None
        user, password = table.get("LOGIN"), table.get("PASSWORD")
        if not isinstance(user, str | bytes) or not isinstance(password, str | bytes):
            raise ValueError("AMQPLAIN auth info is missing LOGIN or PASSWORD field")
        return _as_bytes(user), _as_bytes(password)
    raise ValueError(f"unknown authentication mechanism {mechanism!r}")


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
