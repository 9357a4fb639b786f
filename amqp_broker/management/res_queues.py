"""/api/queues: queues as RabbitMQ's management API shows them (rabbit_mgmt_wm_queue(s),
rabbit_mgmt_wm_queue_get, rabbit_mgmt_wm_queue_purge, rabbit_mgmt_wm_queue_actions):
list (all or one vhost), one queue (GET, PUT to declare, DELETE with if-empty and
if-unused), DELETE .../contents to purge, POST .../get to take messages (ackmode,
encoding, truncate) and POST .../actions (sync, cancel_sync: nothing to do here).

Counts and sizes come from the counters each queue keeps; message rates from
rates.py. An exclusive queue is locked for the API as for any other connection
(RabbitMQ's 405 as a 400 reply).
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .. import policies
from ..definitions import plain
from ..protocol import fast
from ..protocol.errors import AMQPError
from ..queue import MESSAGE_OVERHEAD, Message, Queue
from ..storage import StoreError
from .auth import broker_of, visible_vhosts
from .direct import (
    API_CLIENT,
    Actor,
    channel_error,
    count_as_channel,
    direct_error,
    parse_bool,
    query_flag,
    term_error,
    vhost_of,
    wait_synced,
)
from .errors import ApiError, bad_request, json_object, not_found
from .listing import reply_item, reply_list
from .rates import QUEUE_FIELDS, queue_counters, queue_key, rates_for, stats
from .res_bindings import arguments_of
from .res_connections import connection_details, iso_time
from .res_consumers import queue_consumers
from .res_nodes import node_name

if TYPE_CHECKING:
    from ..broker import Broker
    from ..vhost import VHost

ACK_MODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
             "reject_requeue_false")
GET_KEYS = ("ackmode", "count", "encoding")


TIMESTAMP_FLAG = 0x0040  # the basic properties' timestamp bit


def head_timestamp(q: Queue) -> int | None:
    """The timestamp property of the message at the head, as RabbitMQ shows it."""
    if not q.ready:
        return None
    props = q.ready[0].properties
    if not fast.flags_of(props) & TIMESTAMP_FLAG:
        return None
    try:
        stamp = fast.decode_properties(props).timestamp
    except AMQPError:  # malformed properties were refused at publish; be safe anyway
        return None
    return None if stamp is None else int(stamp)


def unacked_bytes(broker: Broker) -> dict[Queue, int]:
    """Body bytes of each queue's unacknowledged deliveries: one walk over the channels'
    unacked maps, made once per request and only when something is unacked."""
    from .res_connections import open_connections
    sizes: dict[Queue, int] = {}
    for conn in open_connections(broker):
        for ch in conn.channels.values():
            for msg, queue, _consumer in ch.unacked.values():
                sizes[queue] = sizes.get(queue, 0) + msg.body_size
    return sizes


class QueueView:
    """Formats queues for one request (sharing the unacked walk between them)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rates = rates_for(broker)
        self.node = node_name(broker)
        self._unacked: dict[Queue, int] | None = None
        self._wall_offset = time.time() - time.monotonic()

    def unacked_bytes_of(self, q: Queue) -> int:
        if not q.unacked:
            return 0
        if self._unacked is None:
            self._unacked = unacked_bytes(self.broker)
        return self._unacked.get(q, 0)

    def info(self, q: Queue, detail: bool = False) -> dict[str, Any]:
        ready = q.ready_count
        unacked_bytes = self.unacked_bytes_of(q)
        rates = self.rates.object_rates(queue_key(q), QUEUE_FIELDS)
        counters = dict(zip(QUEUE_FIELDS, queue_counters(q), strict=True))
        consumers = len(q.consumers)
        exclusive_tag = next((c.tag for c in q.consumers if c.exclusive), None)
        applied = q.applied or policies.NONE
        info: dict[str, Any] = {
            "arguments": plain(q.arguments),
            "auto_delete": q.auto_delete,
            "consumer_capacity": 1.0 if consumers else 0,
            "consumer_utilisation": 1.0 if consumers else 0,
            "consumers": consumers,
            "durable": q.durable,
            "effective_policy_definition": applied.definition,
            "exclusive": q.exclusive_owner is not None,
            "exclusive_consumer_tag": exclusive_tag,
            "head_message_timestamp": head_timestamp(q),
            "idle_since": iso_time(q.last_used + self._wall_offset),
            "memory": q.ram_bytes + len(q.ready) * MESSAGE_OVERHEAD,
            "message_bytes": q.ready_bytes + unacked_bytes,
            "message_bytes_paged_out": q.ready_bytes - q.ram_bytes,
            "message_bytes_ram": q.ram_bytes + unacked_bytes,
            "message_bytes_ready": q.ready_bytes,
            "message_bytes_unacknowledged": unacked_bytes,
            "messages": ready + q.unacked,
            "messages_details": {"rate": rates["messages"]},
            "messages_ready": ready,
            "messages_ready_details": {"rate": rates["messages_ready"]},
            "messages_unacknowledged": q.unacked,
            "messages_unacknowledged_details": {"rate": rates["messages_unacknowledged"]},
            "name": q.name,
            "node": self.node,
            "operator_policy": applied.operator_name,
            "policy": applied.policy_name,
            "recoverable_slaves": None,
            "single_active_consumer_tag": (q.consumers[0].tag if q.consumers
                                           and q.args.single_active_consumer else None),
            "state": "running",
            "type": q.args.queue_type,
            "vhost": q.vhost.name,
        }
        shown = [(f, counters[f]) for f in ("publish", "deliver_get", "ack") if counters[f]]
        if shown:  # RabbitMQ shows a queue's message_stats once something happened
            info["message_stats"] = stats(shown, rates)
        if q.args.queue_type == "quorum":
            info.update(leader=self.node, members=[self.node], online=[self.node])
        if detail:
            info["consumer_details"] = queue_consumers(q)
            info["deliveries"] = []
            info["incoming"] = []
            owner = q.exclusive_owner
            if owner is not None:
                from ..connection import Connection
                if isinstance(owner, Connection):
                    info["owner_pid_details"] = connection_details(owner)
        return info


def queue_info(q: Queue, detail: bool = False) -> dict[str, Any]:
    """One queue's JSON (see QueueView to format many)."""
    return QueueView(q.vhost.broker).info(q, detail)


def _queue_of(request: Request, vhost: VHost) -> Queue:
    q = vhost.queues.get(request.path_params["name"])
    if q is None:
        raise not_found()
    return q


# --- lists and single queues ------------------------------------------------------------
async def list_queues(request: Request) -> JSONResponse:
    broker = broker_of(request)
    view = QueueView(broker)
    items = [view.info(q) for name in visible_vhosts(request)
             for q in broker.vhosts[name].queues.values()]
    return reply_list(request, items)


async def list_vhost_queues(request: Request) -> JSONResponse:
    vhost, _user = vhost_of(request)
    view = QueueView(vhost.broker)
    return reply_list(request, [view.info(q) for q in vhost.queues.values()])


async def get_queue(request: Request) -> JSONResponse:
    vhost, _user = vhost_of(request)
    return reply_item(request, queue_info(_queue_of(request, vhost), detail=True))


async def put_queue(request: Request) -> Response:
    """Declare: 201 when created, 204 when it existed (and is equivalent)."""
    vhost, user = vhost_of(request, declare=True)
    body = await json_object(request)
    name = request.path_params["name"]
    durable = parse_bool(body.get("durable"))
    auto_delete = parse_bool(body.get("auto_delete"))
    arguments = arguments_of(body)
    broker = broker_of(request)
    actor = Actor(broker, user.name, vhost)
    existed = name in vhost.queues
    try:
        q, _created = vhost.declare_queue(name, False, durable, False, auto_delete, arguments,
                                          API_CLIENT, actor.declare_checks("queue", arguments))
    except AMQPError as exc:
        raise direct_error(exc) from None
    if q.persists:
        await wait_synced(broker, (vhost.queue_key(q.name),))
    return Response(status_code=204 if existed else 201)


async def delete_queue(request: Request) -> Response:
    vhost, user = vhost_of(request)
    q = _queue_of(request, vhost)
    broker = broker_of(request)
    try:
        Actor(broker, user.name, vhost).permit("queue", q.name, "configure")
        vhost.check_exclusive(q, API_CLIENT)
        vhost.delete_queue(q, query_flag(request.query_params.get("if-unused")),
                           query_flag(request.query_params.get("if-empty")))
    except AMQPError as exc:
        raise direct_error(exc) from None
    if q.persists:
        await wait_synced(broker, (vhost.queue_key(q.name),))
    return Response(status_code=204)


async def purge_queue(request: Request) -> Response:
    vhost, user = vhost_of(request)
    q = _queue_of(request, vhost)
    try:
        Actor(broker_of(request), user.name, vhost).permit("queue", q.name, "read")
        vhost.check_exclusive(q, API_CLIENT)
        q.purge()
    except AMQPError as exc:
        raise direct_error(exc) from None
    return Response(status_code=204)


async def queue_actions(request: Request) -> Response:
    """sync and cancel_sync concern mirrored queues, which this broker has none of."""
    vhost, _user = vhost_of(request)
    _queue_of(request, vhost)
    body = await json_object(request)
    action = body.get("action")
    if action not in ("sync", "cancel_sync"):
        raise term_error("unknown", action)
    return Response(status_code=204)


# --- get -------------------------------------------------------------------------------
def parse_int(value: Any) -> int:
    """RabbitMQ's parse_int: an integer, or a string of one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise term_error("not_integer", value)


def message_properties(props: bytes) -> dict[str, Any] | list[Any]:
    """Basic properties as JSON (an empty list when there are none, as RabbitMQ's
    empty proplist)."""
    decoded = fast.decode_properties(props)
    out: dict[str, Any] = {}
    for name in decoded.__slots__:
        value = getattr(decoded, name)
        if value is not None:
            out["type" if name == "message_type" else name] = plain(value)
    return out if out else []


def payload_fields(body: bytes, encoding: str, truncate: int | None) -> dict[str, Any]:
    if truncate is not None and len(body) > truncate:
        body = body[:max(truncate, 0)]
    if encoding == "auto":
        try:
            return {"payload": body.decode("utf-8"), "payload_encoding": "string"}
        except UnicodeDecodeError:
            pass
    return {"payload": base64.b64encode(body).decode("ascii"), "payload_encoding": "base64"}


def take_messages(q: Queue, count: int, ackmode: str, encoding: str,
                  truncate: int | None) -> list[dict[str, Any]]:
    """basic.get count times on q, then settle as ackmode says: ack_requeue_false takes
    them for good (no-ack), reject_requeue_false rejects them (dead-lettered if the
    queue has a dead-letter exchange), the other two put them back, redelivered."""
    broker = q.vhost.broker
    store = broker.store
    taken: list[Message] = []
    out: list[dict[str, Any]] = []
    try:
        for _ in range(count):
            got = q.take()
            if got is None:
                break
            msg, redelivered, body = got
            q.delivered += 1
            taken.append(msg)
            out.append({"payload_bytes": len(body), "redelivered": redelivered,
                        "exchange": msg.exchange, "routing_key": msg.routing_key,
                        "message_count": q.ready_count,
                        "properties": message_properties(msg.properties),
                        **payload_fields(body, encoding, truncate)})
    except StoreError as exc:
        broker.log.error("management get: a message body could not be read", queue=q.name,
                         vhost=q.vhost.name, error=str(exc))
        raise ApiError(500, "internal_error", "a message body could not be read from the "
                       "store (see the broker log)") from None
    finally:
        _settle(q, taken, ackmode, store)
    empty = len(out) < count  # the last basic.get found the queue empty
    manual = 0 if ackmode == "ack_requeue_false" else len(taken)
    count_as_channel(broker, next_tag=len(taken), get_manual=manual,
                     get_auto=len(taken) - manual, manual_delivered=manual,
                     redelivered=sum(1 for m in out if m["redelivered"]),
                     get_empty=int(empty))
    return out


def _settle(q: Queue, taken: list[Message], ackmode: str, store: Any) -> None:
    if not taken:
        return
    stored = [m.msg_id for m in taken if m.stored] if q.persists else []
    if ackmode in ("ack_requeue_true", "reject_requeue_true"):
        for msg_id in stored:
            store.mark_delivered(q.store_key, msg_id)
        q.requeue(taken)
        return
    if ackmode == "reject_requeue_false":
        q.acked += len(taken)
        q.dead_letter_settled(taken)
    if stored:
        store.remove(q.store_key, stored)


async def get_messages(request: Request) -> JSONResponse:
    vhost, user = vhost_of(request)
    body = await json_object(request)
    missing = [key for key in GET_KEYS if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")
    ackmode = body["ackmode"]
    if ackmode not in ACK_MODES:
        raise bad_request(f"Invalid ackmode value: {ackmode}. Valid values are: "
                          + ", ".join(ACK_MODES))
    count = parse_int(body["count"])
    encoding = body["encoding"]
    if encoding not in ("auto", "base64"):
        raise bad_request("Unsupported encoding. Please use auto or base64.")
    truncate = parse_int(body["truncate"]) if body.get("truncate") is not None else None
    name = request.path_params["name"]
    try:
        Actor(broker_of(request), user.name, vhost).permit("queue", name, "read")
        q = vhost.get_queue(name, API_CLIENT)
    except AMQPError as exc:
        raise channel_error(exc) from None
    try:
        return JSONResponse(take_messages(q, count, ackmode, encoding, truncate))
    except AMQPError as exc:  # a stream's 540, worded as RabbitMQ's connection errors
        raise bad_request(f"{exc.reply_code} {exc.text}") from None


def routes() -> list[BaseRoute]:
    return [
        Route("/api/queues", list_queues, methods=["GET"]),
        Route("/api/queues/{vhost}", list_vhost_queues, methods=["GET"]),
        Route("/api/queues/{vhost}/{name}", get_queue, methods=["GET"]),
        Route("/api/queues/{vhost}/{name}", put_queue, methods=["PUT"]),
        Route("/api/queues/{vhost}/{name}", delete_queue, methods=["DELETE"]),
        Route("/api/queues/{vhost}/{name}/contents", purge_queue, methods=["DELETE"]),
        Route("/api/queues/{vhost}/{name}/get", get_messages, methods=["POST"]),
        Route("/api/queues/{vhost}/{name}/actions", queue_actions, methods=["POST"]),
    ]
