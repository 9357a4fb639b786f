"""confirm.select: publisher confirms."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler
from ..protocol.errors import PRECONDITION_FAILED, AMQPError


def select(ch: Channel, args: dict[str, Any]) -> None:
    if ch.tx_mode:
        raise AMQPError(PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode", 85, 10)
    ch.confirm_mode = True
    if not args["nowait"]:
        ch.send((85, 11))


HANDLERS: dict[tuple[int, int], Handler] = {(85, 10): select}
