"""Virtual hosts: GET /api/vhosts, GET/PUT/DELETE /api/vhosts/{vhost} (rabbit_mgmt_wm_vhosts,
rabbit_mgmt_wm_vhost).

Listing shows the vhosts the user may see (all for administrators and monitoring users);
one vhost, and changes, are for administrators. PUT creates (201) or updates (204) through
Broker.add_vhost, and gives the creating user full permissions on a new vhost, as RabbitMQ
does; DELETE (204) goes through Broker.delete_vhost (its queues, exchanges, permissions go
with it, its connections are closed).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..broker import Broker
from ..permissions import FULL
from ..users import DefinitionError, parse_tags
from .auth import broker_of, require_admin, visible_vhosts
from .errors import bad_request, json_object, not_found
from .listing import reply_item, reply_list
from .res_nodes import node_name

QUEUE_FIELDS = ("publish", "deliver_get", "ack")


def _rates(broker: Broker) -> Any:
    try:
        from .rates import rates_for
    except ImportError:
        return None
    return rates_for(broker)


def vhost_json(broker: Broker, name: str) -> dict[str, Any]:
    """One vhost as RabbitMQ shows it: its metadata, then its queues' message counts and
    totals (message_stats once anything was published), and its connections' octets."""
    info = broker.vhost_info.get(name)
    description = info.description if info is not None else ""
    tags = list(info.tags) if info is not None else []
    default_queue_type = info.default_queue_type if info is not None else None
    metadata: dict[str, Any] = {"description": description, "tags": tags}
    if default_queue_type:
        metadata["default_queue_type"] = default_queue_type
    out: dict[str, Any] = {
        "name": name, "description": description, "tags": tags,
        "default_queue_type": default_queue_type or "undefined", "metadata": metadata,
        "tracing": False, "cluster_state": {node_name(broker): "running"},
    }
    vhost = broker.vhosts.get(name)
    if vhost is None:
        return out
    queues = list(vhost.queues.values())
    rates = _rates(broker)
    depth: dict[str, float] = {"messages": 0.0, "messages_ready": 0.0,
                               "messages_unacknowledged": 0.0}
    flow: dict[str, float] = dict.fromkeys(QUEUE_FIELDS, 0.0)
    if rates is not None:
        from .rates import QUEUE_FIELDS as RATE_FIELDS
        from .rates import queue_key
        for q in queues:
            for field, rate in rates.object_rates(queue_key(q), RATE_FIELDS).items():
                if field in depth:
                    depth[field] += rate
                elif field in flow:
                    flow[field] += rate
    sessions: list[Any] = [s for s in broker.connections if getattr(s, "vhost", None) is vhost]
    recv = sum(int(getattr(s, "recv_oct", 0)) for s in sessions)
    send = sum(int(getattr(s, "send_oct", 0)) for s in sessions)
    if sessions:
        out["send_oct"] = send
        out["send_oct_details"] = {"rate": 0.0}
        out["recv_oct"] = recv
        out["recv_oct_details"] = {"rate": 0.0}
    if queues:
        ready = sum(q.ready_count for q in queues)
        unacked = sum(q.unacked for q in queues)
        for field, value in (("messages_ready", ready), ("messages_unacknowledged", unacked),
                             ("messages", ready + unacked)):
            out[field] = value
            out[field + "_details"] = {"rate": depth[field]}
        counts = {"publish": sum(getattr(q, "published", 0) for q in queues),
                  "deliver_get": sum(getattr(q, "delivered", 0) for q in queues),
                  "ack": sum(getattr(q, "acked", 0) for q in queues)}
        if any(counts.values()):
            stats: dict[str, Any] = {}
            for field, value in counts.items():
                stats[field] = value
                stats[field + "_details"] = {"rate": flow[field]}
            out["message_stats"] = stats
    return out


async def list_vhosts(request: Request) -> JSONResponse:
    broker = broker_of(request)
    return reply_list(request, [vhost_json(broker, name) for name in visible_vhosts(request)],
                      default_sort=("name",))


async def get_vhost(request: Request) -> JSONResponse:
    require_admin(request)
    broker = broker_of(request)
    name = request.path_params["vhost"]
    if name not in broker.vhosts:
        raise not_found()
    return reply_item(request, vhost_json(broker, name))


async def put_vhost(request: Request) -> Response:
    user = require_admin(request)
    broker = broker_of(request)
    name = request.path_params["vhost"]
    body = await json_object(request)
    description = body.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise bad_request("description must be a string")
    try:
        tags = parse_tags(body.get("tags"))
    except DefinitionError as exc:
        raise bad_request(str(exc)) from None
    queue_type = body.get("default_queue_type", body.get("defaultqueuetype"))
    if queue_type is not None and not isinstance(queue_type, str):
        raise bad_request("default_queue_type must be a string")
    existed = name in broker.vhosts
    try:
        # an existing vhost keeps its default queue type (as RabbitMQ 3.10)
        broker.add_vhost(name, description, tags, None if existed else queue_type)
    except DefinitionError as exc:
        raise bad_request(str(exc)) from None
    if existed:
        return Response(status_code=204)
    if user.name in broker.access.users:
        broker.access.set_permissions(user.name, name, FULL, FULL, FULL)
    return Response(status_code=201)


async def delete_vhost(request: Request) -> Response:
    require_admin(request)
    broker = broker_of(request)
    name = request.path_params["vhost"]
    if name not in broker.vhosts:
        raise not_found()
    broker.delete_vhost(name)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [Route("/api/vhosts", list_vhosts, methods=["GET"]),
            Route("/api/vhosts/{vhost}", get_vhost, methods=["GET"]),
            Route("/api/vhosts/{vhost}", put_vhost, methods=["PUT"]),
            Route("/api/vhosts/{vhost}", delete_vhost, methods=["DELETE"])]
