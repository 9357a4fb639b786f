"""/api/consumers[/{vhost}]: every consumer of every queue, as RabbitMQ's management API
shows them (rabbit_mgmt_wm_consumers): monitoring and administrator users see all,
other management users those on their own connections, within the vhosts they may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ..definitions import plain
from .auth import broker_of, login, require_vhost_access, visible_vhosts
from .listing import reply_list
from .res_connections import connection_name, peer_address
from .res_nodes import node_name

if TYPE_CHECKING:
    from ..queue import Consumer, Queue


def channel_details(consumer: Consumer) -> dict[str, Any]:
    """The consuming channel, as `channel_details` (empty for a target that is not a
    client channel)."""
    from ..channel import Channel
    ch = consumer.channel
    if not isinstance(ch, Channel):
        return {}
    conn = ch.connection
    host, port = peer_address(conn)
    name = connection_name(conn)
    return {"connection_name": name, "name": f"{name} ({ch.number})",
            "node": node_name(ch.broker), "number": ch.number, "peer_host": host,
            "peer_port": port, "user": conn.user}


def consumer_info(consumer: Consumer) -> dict[str, Any]:
    q = consumer.queue
    return {
        "ack_required": not consumer.no_ack,
        "active": True,
        "activity_status": "up",
        "arguments": plain(consumer.arguments),
        "channel_details": channel_details(consumer),
        "consumer_tag": consumer.tag,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch,
        "queue": {"name": q.name, "vhost": q.vhost.name},
    }


def queue_consumers(q: Queue) -> list[dict[str, Any]]:
    """A queue's `consumer_details`. With single active consumer the first is the
    active one ("single_active"); the others wait."""
    out = []
    for i, consumer in enumerate(q.consumers):
        info = consumer_info(consumer)
        if q.args.single_active_consumer:
            info["active"] = i == 0
            info["activity_status"] = "single_active" if i == 0 else "waiting"
        out.append(info)
    return out


async def _list(request: Request, vhosts: list[str]) -> JSONResponse:
    user = login(request)
    broker = broker_of(request)
    items: list[dict[str, Any]] = []
    for name in vhosts:
        vhost = broker.vhosts.get(name)
        if vhost is None:
            continue
        for q in vhost.queues.values():
            items.extend(queue_consumers(q))
    if not user.is_monitor:
        items = [c for c in items if c["channel_details"].get("user") == user.name]
    return reply_list(request, items, default_sort=(), paginated=False)


async def list_consumers(request: Request) -> JSONResponse:
    return await _list(request, visible_vhosts(request))


async def list_vhost_consumers(request: Request) -> JSONResponse:
    vhost = request.path_params["vhost"]
    require_vhost_access(request, vhost, monitor_reads=True)
    return await _list(request, [vhost])


def routes() -> list[BaseRoute]:
    return [
        Route("/api/consumers", list_consumers, methods=["GET"]),
        Route("/api/consumers/{vhost}", list_vhost_consumers, methods=["GET"]),
    ]
