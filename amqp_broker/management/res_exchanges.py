"""/api/exchanges: exchanges as RabbitMQ's management API shows them
(rabbit_mgmt_wm_exchange(s), rabbit_mgmt_wm_exchange_publish): list (all or one vhost),
one exchange (GET, PUT to declare, DELETE with if-unused) and POST .../publish, which
routes one message as the HTTP user would publish it and answers `{"routed": bool}`.

In a path the default exchange is "amq.default"; in JSON its name is "".
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import pipeline
from ..counters import SIZE_BOUNDS
from ..definitions import plain
from ..exchanges.topic import RouteDeferred
from ..protocol import fast
from ..protocol.errors import PRECONDITION_FAILED, AMQPError
from .auth import broker_of, visible_vhosts
from .direct import (
    Actor,
    count_as_channel,
    direct_error,
    parse_bool,
    publish_error,
    query_flag,
    term_error,
    vhost_of,
    wait_synced,
    wait_token,
)
from .errors import bad_request, json_object, not_found
from .listing import reply_item, reply_list
from .res_bindings import arguments_of, exchange_id

if TYPE_CHECKING:
    from ..broker import Broker
    from ..vhost import Exchange, VHost

SYSTEM_USER = "rmq-internal"  # who RabbitMQ says declared the default and amq.* exchanges
PUBLISH_KEYS = ("routing_key", "properties", "payload", "payload_encoding")
# basic properties the API accepts, by their JSON names (pamqp's name for "type")
STRING_PROPERTIES = {"content_type": "content_type", "content_encoding": "content_encoding",
                     "correlation_id": "correlation_id", "reply_to": "reply_to",
                     "expiration": "expiration", "message_id": "message_id",
                     "type": "message_type", "user_id": "user_id", "app_id": "app_id",
                     "cluster_id": "cluster_id"}
INT_PROPERTIES = ("delivery_mode", "priority", "timestamp")


def exchange_info(ex: Exchange, detail: bool = False) -> dict[str, Any]:
    system = ex.name == "" or ex.name.startswith("amq.")
    info: dict[str, Any] = {
        "arguments": plain(ex.arguments),
        "auto_delete": ex.auto_delete,
        "durable": ex.durable,
        "internal": ex.internal,
        "name": ex.name,
        "type": ex.type_name,
        "vhost": ex.vhost.name,
    }
    if ex.applied.policy is not None:  # RabbitMQ shows an exchange's policy only when set
        info["policy"] = ex.applied.policy.name
    if system:  # who declared the others is not kept
        info["user_who_performed_action"] = SYSTEM_USER
    if ex.type_name == "x-delayed-message":  # as the delayed-message plugin shows it
        info["messages_delayed"] = ex.vhost.broker.delayed.count_of(ex)
    if detail:
        info["incoming"] = []
        info["outgoing"] = []
    return info


# --- handlers ---------------------------------------------------------------------------
async def list_exchanges(request: Request) -> JSONResponse:
    broker = broker_of(request)
    items = [exchange_info(ex) for name in visible_vhosts(request)
             for ex in broker.vhosts[name].exchanges.values()]
    return reply_list(request, items)


async def list_vhost_exchanges(request: Request) -> JSONResponse:
    vhost, user = vhost_of(request)
    return reply_list(request, [exchange_info(ex) for ex in vhost.exchanges.values()])


async def get_exchange(request: Request) -> JSONResponse:
    vhost, user = vhost_of(request)
    ex = vhost.exchanges.get(exchange_id(request.path_params["name"]))
    if ex is None:
        raise not_found()
    return reply_item(request, exchange_info(ex, detail=True))


async def put_exchange(request: Request) -> Response:
    """Declare: 201 when created, 204 when it existed (and is equivalent)."""
    vhost, user = vhost_of(request, declare=True)
    body = await json_object(request)
    name = exchange_id(request.path_params["name"])
    type_name = body.get("type", "direct")
    if not isinstance(type_name, str):
        raise bad_request(f"exchange type must be a string, got {type_name!r}")
    durable = parse_bool(body.get("durable"))
    auto_delete = parse_bool(body.get("auto_delete"))
    internal = parse_bool(body.get("internal"))
    arguments = arguments_of(body)
    broker = broker_of(request)
    actor = Actor(broker, user.name, vhost)
    existed = name in vhost.exchanges
    try:
        ex = vhost.declare_exchange(name, type_name, False, durable, auto_delete, internal,
                                    arguments, actor.declare_checks("exchange", arguments))
    except AMQPError as exc:
        raise direct_error(exc) from None
    if ex.durable:
        await wait_synced(broker, (vhost.exchange_key(ex.name),))
    return Response(status_code=204 if existed else 201)


async def delete_exchange(request: Request) -> Response:
    vhost, user = vhost_of(request)
    name = exchange_id(request.path_params["name"])
    ex = vhost.exchanges.get(name)
    if ex is None:
        raise not_found()
    broker = broker_of(request)
    try:
        if name and not name.startswith("amq."):
            Actor(broker, user.name, vhost).permit("exchange", name,
                                                                  "configure")
        vhost.delete_exchange(name, query_flag(request.query_params.get("if-unused")))
    except AMQPError as exc:
        raise direct_error(exc) from None
    if ex.durable:
        await wait_synced(broker, (vhost.exchange_key(name),))
    return Response(status_code=204)


def message_properties(props: Any) -> bytes:
    """Raw basic properties from the JSON `properties` object (RabbitMQ's
    to_basic_properties: the integer ones must be integers, the others strings)."""
    if props is None or props == []:
        props = {}
    if not isinstance(props, dict):
        raise bad_request("properties must be a JSON object")
    values: dict[str, Any] = {}
    for key in INT_PROPERTIES:
        value = props.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise term_error("not_int", key)
            if key != "timestamp" and not 0 <= value <= 255:
                raise bad_request(f"{key} must be between 0 and 255")
            values[key] = value
    for key, attribute in STRING_PROPERTIES.items():
        value = props.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise term_error("not_string", key)
            if len(value.encode("utf-8", "surrogateescape")) > 255:
                raise bad_request(f"property {key} is longer than 255 bytes")
            values[attribute] = value
    headers = props.get("headers")
    if headers is not None and headers != []:
        if not isinstance(headers, dict):
            raise bad_request("headers must be a JSON object")
        values["headers"] = headers
    if "timestamp" in values and not 0 <= values["timestamp"] < 2 ** 64:
        raise bad_request("timestamp out of range")
    try:
        return fast.encode_properties(fast.Properties(**values))
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad_request(f"invalid properties: {exc}") from None


def decode_payload(payload: Any, encoding: Any) -> bytes:
    if not isinstance(payload, str):
        raise bad_request("payload_not_string")
    if encoding == "string":
        return payload.encode("utf-8", "surrogateescape")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise term_error("not_base64", payload) from None
    raise term_error("unsupported_encoding", encoding)


def publish(broker: Broker, actor: Actor, vhost: VHost, exchange: str, routing_key: str,
            props: bytes, body: bytes) -> tuple[bool, int]:
    """Route and enqueue one message as the user's channel would (permissions, internal
    exchanges, user_id and expiration checks, the publish pipeline); (routed, the store
    token its confirm waits for). Counted in the broker's totals like any publish."""
    actor.permit("exchange", exchange, "write")
    ex = vhost.exchanges.get(exchange)
    if ex is None:
        raise AMQPError(404, f"no exchange '{exchange}' {vhost.where()}", 60, 40)
    if ex.internal:
        raise AMQPError(403, f"cannot publish to internal exchange '{exchange}' "
                        f"{vhost.where()}", 60, 40)
    if ex.type_name == "topic":
        actor.permit_topic(ex, routing_key, "write")
    decoded = fast.decode_properties(props)
    if decoded.user_id is not None:
        from ..permissions import check_user_id
        check_user_id(actor.access, decoded.user_id)
    expires = None
    if decoded.expiration is not None:
        try:
            ttl = int(decoded.expiration)
            if ttl < 0:
                raise ValueError
        except ValueError:
            raise AMQPError(PRECONDITION_FAILED, f"invalid expiration "
                            f"'{decoded.expiration}': no_integer") from None
        expires = ttl / 1000
    try:
        queues = vhost.route(ex, routing_key, lambda: fast.message_headers(props))
    except RouteDeferred:  # only when routing in slices, which this call does not ask for
        queues = ()
    totals = broker.counters
    totals.received += 1
    totals.size_sum += len(body)
    totals.size_counts[bisect_left(SIZE_BOUNDS, len(body))] += 1
    token, refused, taken = pipeline.publish(vhost, ex.name, fast.shortstr(ex.name),
                                             routing_key, fast.shortstr(routing_key), props,
                                             body, queues, expires)
    if taken:
        totals.routed += len(queues)
    elif not refused:
        totals.unroutable += 1
    count_as_channel(broker, published=1, unroutable=int(not taken and not refused),
                     publish_seq=1, _confirm_told=1, confirm_nacks=int(refused))
    if refused:  # a reject-publish queue turned it away: the confirm would be a nack
        raise bad_request("rejected Unable to publish message. Check queue limits.")
    return taken, token


async def publish_message(request: Request) -> JSONResponse:
    vhost, user = vhost_of(request)
    body = await json_object(request)
    missing = [key for key in PUBLISH_KEYS if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
    routing_key = body["routing_key"]
    if not isinstance(routing_key, str):
        raise bad_request("routing_key must be a string")
    if len(routing_key.encode("utf-8", "surrogateescape")) > 255:
        raise bad_request("routing_key is longer than 255 bytes")
    payload = decode_payload(body["payload"], body["payload_encoding"])
    props = message_properties(body["properties"])
    broker = broker_of(request)
    if len(payload) > broker.config.max_message_size:
        raise bad_request(f"message size {len(payload)} is larger than the configured "
                          f"max size {broker.config.max_message_size}")
    actor = Actor(broker, user.name, vhost)
    try:
        routed, token = publish(broker, actor, vhost, exchange_id(request.path_params["name"]),
                                routing_key, props, payload)
    except AMQPError as exc:
        raise publish_error(exc) from None
    await wait_token(broker, token)  # a persistent message is confirmed once on disk
    return JSONResponse({"routed": routed})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/exchanges", list_exchanges, methods=["GET"]),
        Route("/api/exchanges/{vhost}", list_vhost_exchanges, methods=["GET"]),
        Route("/api/exchanges/{vhost}/{name}", get_exchange, methods=["GET"]),
        Route("/api/exchanges/{vhost}/{name}", put_exchange, methods=["PUT"]),
        Route("/api/exchanges/{vhost}/{name}", delete_exchange, methods=["DELETE"]),
        Route("/api/exchanges/{vhost}/{name}/publish", publish_message, methods=["POST"]),
    ]
