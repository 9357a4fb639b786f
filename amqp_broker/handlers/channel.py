"""channel.* methods other than open and close (the connection handles those)."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler
from ..protocol.errors import NOT_IMPLEMENTED, AMQPError


def flow(ch: Channel, args: dict[str, Any]) -> None:
    # Like RabbitMQ, a client may not ask the broker to stop deliveries this way
    # (basic.qos is the tool); active=false is a 540 connection error.
    if not args["active"]:
        raise AMQPError(NOT_IMPLEMENTED, "active=false", 20, 20)
    ch.send((20, 21), active=True)


def flow_ok(ch: Channel, args: dict[str, Any]) -> None:
    return None


HANDLERS: dict[tuple[int, int], Handler] = {
    (20, 20): flow,
    (20, 21): flow_ok,
}
