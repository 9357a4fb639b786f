"""/api/bindings: bindings as RabbitMQ's management API shows them
(rabbit_mgmt_wm_bindings, rabbit_mgmt_wm_binding): every binding of a vhost, those
between one exchange and one queue or exchange (GET, POST to create), and one binding
by its `properties_key` (GET, DELETE).

The default exchange's implicit binding to every queue (routing key = queue name) is
listed as RabbitMQ lists it. A `properties_key` is RabbitMQ's: the routing key
URL-quoted ("~" for an empty key without arguments), then, when the binding has
arguments, "~" and a hash of them (rabbit_mgmt_format:pack_binding_props), the same
hash as RabbitMQ's (erlhash.py) for the argument types JSON and most clients send.
The exchange named "amq.default" in a path is the default exchange.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..definitions import plain
from ..protocol.errors import AMQPError
from ..queue import Queue
from .auth import broker_of, require_vhost_access, visible_vhosts
from .direct import API_CLIENT, Actor, direct_error, vhost_not_found, wait_synced
from .erlhash import phash2, table_term
from .errors import bad_request, json_object, not_found
from .listing import reply_item, reply_list

if TYPE_CHECKING:
    from ..vhost import Exchange, VHost

BINDING_SORT = ("vhost", "source", "type", "destination", "routing_key", "properties_key")


def exchange_id(name: str) -> str:
    """An exchange name from a path: "amq.default" is the default exchange."""
    return "" if name == "amq.default" else name


def args_hash(arguments: dict[str, Any]) -> str:
    """RabbitMQ's hash of binding arguments in a properties_key: erlang:phash2 of the
    argument table (32 bits), URL-safe base64 without padding (6 characters)."""
    digest = phash2(table_term(arguments)).to_bytes(4, "big")
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _quote(text: str) -> str:
    return quote_plus(text, safe="", encoding="utf-8", errors="surrogateescape").replace(
        "~", "%7E")


def properties_key(routing_key: str, arguments: dict[str, Any]) -> str:
    if not arguments:
        return _quote(routing_key) if routing_key else "~"
    return f"{_quote(routing_key)}~{_quote(args_hash(arguments))}"


def binding_info(vhost: str, source: str, dest: Any, routing_key: str,
                 arguments: dict[str, Any]) -> dict[str, Any]:
    """One binding; dest is the bound Queue or Exchange."""
    return {"source": source, "vhost": vhost, "destination": dest.name,
            "destination_type": "queue" if isinstance(dest, Queue) else "exchange",
            "routing_key": routing_key, "arguments": plain(arguments),
            "properties_key": properties_key(routing_key, arguments)}


def default_binding(vhost: str, queue: str) -> dict[str, Any]:
    """The default exchange's implicit binding to a queue."""
    return {"source": "", "vhost": vhost, "destination": queue, "destination_type": "queue",
            "routing_key": queue, "arguments": {}, "properties_key": _quote(queue) or "~"}


def source_bindings(vhost: VHost, ex: Exchange) -> list[dict[str, Any]]:
    """Bindings whose source is ex."""
    if ex is vhost.default_exchange:
        return [default_binding(vhost.name, name) for name in vhost.queues]
    return [binding_info(vhost.name, ex.name, dest, key, args)
            for dest, key, args in ex.table.bindings()]


def vhost_bindings(vhost: VHost) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ex in vhost.exchanges.values():
        out.extend(source_bindings(vhost, ex))
    return out


def destination_bindings(vhost: VHost, dest: Queue | Exchange | None, dest_kind: str,
                         dest_name: str) -> list[dict[str, Any]]:
    """Bindings whose destination is dest (the default binding of a queue name is
    listed even when no such queue exists, as RabbitMQ does)."""
    out = [default_binding(vhost.name, dest_name)] if dest_kind == "queue" else []
    if dest is None:
        return out
    for ex in vhost.exchanges.values():
        if ex is vhost.default_exchange:
            continue
        if isinstance(dest, Queue) or ex.has_exchange_destinations:
            for bound, key, args in ex.table.bindings():
                if bound is dest:
                    out.append(binding_info(vhost.name, ex.name, dest, key, args))
    return out


def between(vhost: VHost, source: str, dest_kind: str, dest_name: str) -> list[dict[str, Any]]:
    """Bindings from the exchange `source` to one queue or exchange."""
    ex = vhost.exchanges.get(source)
    table = vhost.queues if dest_kind == "queue" else vhost.exchanges
    dest = table.get(dest_name)
    if ex is None or dest is None:
        return []
    if ex is vhost.default_exchange:
        return [default_binding(vhost.name, dest_name)] if dest_kind == "queue" else []
    return [binding_info(vhost.name, ex.name, bound, key, args)
            for bound, key, args in ex.table.bindings() if bound is dest]


def raw_between(vhost: VHost, source: str, dest_kind: str,
                dest_name: str) -> list[tuple[Exchange, Any, str, dict[str, Any]]]:
    ex = vhost.exchanges.get(source)
    table = vhost.queues if dest_kind == "queue" else vhost.exchanges
    dest = table.get(dest_name)
    if ex is None or dest is None or ex is vhost.default_exchange:
        return []
    return [(ex, bound, key, args) for bound, key, args in ex.table.bindings()
            if bound is dest]


def find_by_props(vhost: VHost, source: str, dest_kind: str, dest_name: str,
                  props: str) -> tuple[Exchange, Any, str, dict[str, Any]] | None:
    """The binding a properties_key names (rabbit_mgmt_wm_binding:unpack): the routing
    key, and the hash of the arguments when there are any."""
    parts = props.split("~")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing "~" names nothing more (RabbitMQ's tokenise)
    if len(parts) > 2:
        return None
    key = unquote_plus(parts[0]) if parts else ""
    wanted_hash = unquote_plus(parts[1]) if len(parts) == 2 else None
    for found in raw_between(vhost, source, dest_kind, dest_name):
        _ex, _dest, bound_key, args = found
        if bound_key != key:
            continue
        if wanted_hash is None and not args:
            return found
        if wanted_hash is not None and args and args_hash(args) == wanted_hash:
            return found
    return None


# --- handlers ---------------------------------------------------------------------------
def _dest_kind(request: Request) -> str:
    """"q" or "e" in the path; anything else names no resource."""
    kind = request.path_params["kind"]
    if kind not in ("q", "e"):
        raise not_found()
    return "queue" if kind == "q" else "exchange"


async def list_bindings(request: Request) -> JSONResponse:
    broker = broker_of(request)
    items: list[dict[str, Any]] = []
    for name in visible_vhosts(request):
        items.extend(vhost_bindings(broker.vhosts[name]))
    return reply_list(request, items, default_sort=BINDING_SORT, paginated=False)


async def list_vhost_bindings(request: Request) -> JSONResponse:
    name = request.path_params["vhost"]
    require_vhost_access(request, name, monitor_reads=True)
    return reply_list(request, vhost_bindings(broker_of(request).vhosts[name]),
                      default_sort=BINDING_SORT, paginated=False)


async def list_between(request: Request) -> JSONResponse:
    """GET /api/bindings/{vhost}/e/{source}/{q|e}/{destination}; an unknown vhost,
    exchange or destination is an empty list, as RabbitMQ's."""
    name = request.path_params["vhost"]
    require_vhost_access(request, name, monitor_reads=True, must_exist=False)
    vhost = broker_of(request).vhosts.get(name)
    items = [] if vhost is None else between(
        vhost, exchange_id(request.path_params["source"]), _dest_kind(request),
        request.path_params["destination"])
    return reply_list(request, items, default_sort=BINDING_SORT, paginated=False)


def routing_key_of(body: dict[str, Any]) -> str:
    """The routing key of a bind request; RabbitMQ takes a number as its text."""
    key = body.get("routing_key", "")
    if key is None:
        return ""
    if isinstance(key, bool) or not isinstance(key, (str, int, float)):
        raise bad_request(f"routing_key must be a string, got {json.dumps(key)}")
    return key if isinstance(key, str) else json.dumps(key)


def arguments_of(body: dict[str, Any], field: str = "arguments") -> dict[str, Any]:
    args = body.get(field)
    if args is None or args == []:
        return {}
    if not isinstance(args, dict):
        raise bad_request(f"{field} must be a JSON object")
    return args


async def create_binding(request: Request) -> Response:
    """POST: bind, then 201 with the new binding's address (relative to this one) in
    Location, as RabbitMQ."""
    name = request.path_params["vhost"]
    user = require_vhost_access(request, name, must_exist=False)
    body = await json_object(request)
    broker = broker_of(request)
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise vhost_not_found()
    source_name = exchange_id(request.path_params["source"])
    dest_kind = _dest_kind(request)
    dest_name = request.path_params["destination"]
    routing_key = routing_key_of(body)
    arguments = arguments_of(body)
    actor = Actor(broker, user.name, vhost)
    try:
        actor.permit_binding(dest_kind, dest_name, source_name, routing_key)
        dest: Any = (vhost.get_queue(dest_name, API_CLIENT) if dest_kind == "queue"
                     else vhost.get_exchange(dest_name))
        source = vhost.get_exchange(source_name)
        vhost.bind(source, dest, routing_key, arguments)
    except AMQPError as exc:
        raise direct_error(exc) from None
    await wait_synced(broker, vhost.binding_definition_keys(source, dest, routing_key,
                                                            arguments))
    # RabbitMQ quotes each path segment of the address, the properties key again too
    props = properties_key(routing_key, arguments)
    location = "/".join(quote_plus(part, safe="", errors="surrogateescape")
                        for part in (dest_name, props))
    return Response(status_code=201, headers={"location": location})


def _named_binding(request: Request) -> tuple[VHost, tuple[Exchange, Any, str, dict[str, Any]]]:
    name = request.path_params["vhost"]
    vhost = broker_of(request).vhosts.get(name)
    if vhost is None:
        raise not_found()
    found = find_by_props(vhost, exchange_id(request.path_params["source"]),
                          _dest_kind(request), request.path_params["destination"],
                          request.path_params["props"])
    if found is None:
        raise not_found()
    return vhost, found


async def get_binding(request: Request) -> JSONResponse:
    require_vhost_access(request, request.path_params["vhost"], monitor_reads=True)
    vhost, (ex, dest, key, args) = _named_binding(request)
    return reply_item(request, binding_info(vhost.name, ex.name, dest, key, args))


async def delete_binding(request: Request) -> Response:
    user = require_vhost_access(request, request.path_params["vhost"])
    vhost, (ex, dest, key, args) = _named_binding(request)
    broker = broker_of(request)
    keys = vhost.binding_definition_keys(ex, dest, key, args)
    try:
        Actor(broker, user.name, vhost).permit_binding(
            "queue" if isinstance(dest, Queue) else "exchange", dest.name, ex.name, key)
        vhost.unbind(ex, dest, key, args, API_CLIENT)
    except AMQPError as exc:
        raise direct_error(exc) from None
    await wait_synced(broker, keys)
    return Response(status_code=204)


async def exchange_source_bindings(request: Request) -> JSONResponse:
    """GET /api/exchanges/{vhost}/{name}/bindings/source"""
    vhost = _vhost_for_list(request)
    ex = vhost.exchanges.get(exchange_id(request.path_params["name"])) if vhost else None
    items = source_bindings(vhost, ex) if vhost is not None and ex is not None else []
    return reply_list(request, items, default_sort=BINDING_SORT, paginated=False)


async def exchange_destination_bindings(request: Request) -> JSONResponse:
    """GET /api/exchanges/{vhost}/{name}/bindings/destination"""
    vhost = _vhost_for_list(request)
    name = exchange_id(request.path_params["name"])
    items = [] if vhost is None else destination_bindings(
        vhost, vhost.exchanges.get(name), "exchange", name)
    return reply_list(request, items, default_sort=BINDING_SORT, paginated=False)


async def queue_bindings(request: Request) -> JSONResponse:
    """GET /api/queues/{vhost}/{name}/bindings"""
    vhost = _vhost_for_list(request)
    name = request.path_params["name"]
    items = [] if vhost is None else destination_bindings(
        vhost, vhost.queues.get(name), "queue", name)
    return reply_list(request, items, default_sort=BINDING_SORT, paginated=False)


def _vhost_for_list(request: Request) -> VHost | None:
    name = request.path_params["vhost"]
    require_vhost_access(request, name, monitor_reads=True)
    return broker_of(request).vhosts.get(name)


def routes() -> list[BaseRoute]:
    kinds = "{kind:str}"
    return [
        Route("/api/bindings", list_bindings, methods=["GET"]),
        Route("/api/bindings/{vhost}", list_vhost_bindings, methods=["GET"]),
        Route(f"/api/bindings/{{vhost}}/e/{{source}}/{kinds}/{{destination}}", list_between,
              methods=["GET"]),
        Route(f"/api/bindings/{{vhost}}/e/{{source}}/{kinds}/{{destination}}", create_binding,
              methods=["POST"]),
        Route(f"/api/bindings/{{vhost}}/e/{{source}}/{kinds}/{{destination}}/{{props}}",
              get_binding, methods=["GET"]),
        Route(f"/api/bindings/{{vhost}}/e/{{source}}/{kinds}/{{destination}}/{{props}}",
              delete_binding, methods=["DELETE"]),
        Route("/api/exchanges/{vhost}/{name}/bindings/source", exchange_source_bindings,
              methods=["GET"]),
        Route("/api/exchanges/{vhost}/{name}/bindings/destination",
              exchange_destination_bindings, methods=["GET"]),
        Route("/api/queues/{vhost}/{name}/bindings", queue_bindings, methods=["GET"]),
    ]

