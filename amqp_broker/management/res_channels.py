"""/api/channels: the channels of client connections, as RabbitMQ's management API shows
them (rabbit_mgmt_wm_channel(s), rabbit_mgmt_wm_channels_vhost). A channel is named
after its connection: "127.0.0.1:54321 -> 127.0.0.1:5672 (1)". Monitoring and
administrator users see every channel, other management users those of their own
connections (as connections).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ..protocol.channels import ChannelState
from .auth import broker_of, login, require_vhost_access
from .errors import not_authorised, not_found
from .listing import reply_item, reply_list
from .rates import channel_message_stats, rates_for
from .res_connections import (
    connection_details,
    connection_name,
    may_see,
    open_connections,
    visible_connections,
)
from .res_nodes import node_name

if TYPE_CHECKING:
    from ..broker import Broker
    from ..channel import Channel


def channel_name(ch: Channel) -> str:
    return f"{connection_name(ch.connection)} ({ch.number})"


def all_channels(broker: Broker) -> list[Channel]:
    return [ch for conn in open_connections(broker) for ch in conn.channels.values()]


def _state(ch: Channel) -> str:
    if ch.state is not ChannelState.OPEN:
        return "closing"
    return "running"


def channel_info(ch: Channel, detail: bool = False) -> dict[str, Any]:
    conn = ch.connection
    info: dict[str, Any] = {
        "acks_uncommitted": sum(len(taken) for taken, _action in ch.tx_settles),
        "confirm": ch.confirm_mode,
        "connection_details": connection_details(conn),
        "consumer_count": len(ch.consumers),
        "global_prefetch_count": ch.global_prefetch,
        "messages_unacknowledged": len(ch.unacked),
        "messages_uncommitted": len(ch.tx_publishes),
        "messages_unconfirmed": (ch.publish_seq - ch._confirm_told) if ch.confirm_mode else 0,
        "name": channel_name(ch),
        "node": node_name(ch.broker),
        "number": ch.number,
        "pending_raft_commands": 0,
        "prefetch_count": ch.prefetch_count,
        "state": _state(ch),
        "transactional": ch.tx_mode,
        "user": conn.user,
        "user_who_performed_action": conn.user,
        "vhost": ch.vhost.name,
    }
    message_stats = channel_message_stats(ch, rates_for(ch.broker))
    if message_stats:
        info["message_stats"] = message_stats
    if detail:
        from .res_consumers import consumer_info
        info["consumer_details"] = [consumer_info(c) for c in ch.consumers.values()]
        info["deliveries"] = []
        info["publishes"] = []
    return info


def find_channel(broker: Broker, name: str) -> Channel | None:
    for ch in all_channels(broker):
        if channel_name(ch) == name:
            return ch
    return None


# --- handlers ---------------------------------------------------------------------------
async def list_channels(request: Request) -> JSONResponse:
    user = login(request)
    conns = visible_connections(user, open_connections(broker_of(request)))
    return reply_list(request, [channel_info(ch) for conn in conns
                                for ch in conn.channels.values()])


async def list_vhost_channels(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    user = require_vhost_access(request, vhost, monitor_reads=True)
    conns = [c for c in open_connections(broker_of(request)) if c.vhost.name == vhost]
    return reply_list(request, [channel_info(ch)
                                for conn in visible_connections(user, conns)
                                for ch in conn.channels.values()], paginated=False)


async def get_channel(request: Request) -> JSONResponse:
    user = login(request)
    ch = find_channel(broker_of(request), request.path_params["name"])
    if not may_see(user, ch.connection.user if ch is not None else ""):
        raise not_authorised("User not authorised to access object")
    if ch is None:
        raise not_found()
    return reply_item(request, channel_info(ch, detail=True))


def routes() -> list[BaseRoute]:
    return [
        Route("/api/channels", list_channels, methods=["GET"]),
        Route("/api/channels/{name}", get_channel, methods=["GET"]),
        Route("/api/vhosts/{vhost}/channels", list_vhost_channels, methods=["GET"]),
    ]
