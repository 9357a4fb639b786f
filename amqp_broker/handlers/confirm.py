"""confirm.select: publisher confirms."""

from __future__ import annotations

from pamqp import commands

from ..channel import Channel, Handlers
from ..protocol.errors import PRECONDITION_FAILED, AMQPError


def select(ch: Channel, method: commands.Confirm.Select) -> None:
    if ch.tx_mode:
        raise AMQPError(PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode", 85, 10)
    ch.confirm_mode = True
    if not method.nowait:
        ch.send(commands.Confirm.SelectOk)


HANDLERS: Handlers = {commands.Confirm.Select: select}
