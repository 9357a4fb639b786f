"""channel.* methods other than open (the connection opens channels)."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler


def flow(ch: Channel, args: dict[str, Any]) -> None:
    ch.flow_active = bool(args["active"])
    ch.send((20, 21), active=ch.flow_active)
    if ch.flow_active:
        ch.kick()


def flow_ok(ch: Channel, args: dict[str, Any]) -> None:
    return None


HANDLERS: dict[tuple[int, int], Handler] = {
    (20, 20): flow,
    (20, 21): flow_ok,
}
