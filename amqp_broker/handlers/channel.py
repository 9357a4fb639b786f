"""channel.* methods other than open and close (the connection handles those)."""

from __future__ import annotations

from pamqp import commands

from ..channel import Channel, Handlers
from ..protocol.errors import NOT_IMPLEMENTED, AMQPError


def flow(ch: Channel, method: commands.Channel.Flow) -> None:
    # Like RabbitMQ, a client may not ask the broker to stop deliveries this way
    # (basic.qos is the tool); active=false is a 540 connection error.
    if not method.active:
        raise AMQPError(NOT_IMPLEMENTED, "active=false", 20, 20)
    ch.send(commands.Channel.FlowOk, active=True)


def flow_ok(ch: Channel, method: commands.Channel.FlowOk) -> None:
    return None


HANDLERS: Handlers = {
    commands.Channel.Flow: flow,
    commands.Channel.FlowOk: flow_ok,
}
