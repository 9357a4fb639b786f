"""queue.declare, bind, unbind, purge, delete."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler
from ..protocol.errors import ACCESS_REFUSED, NOT_FOUND, AMQPError
from ..queue import Queue


def _queue_name(ch: Channel, name: str) -> str:
    # An empty name means the last queue declared on this channel, as in RabbitMQ.
    return name or ch.connection.last_queue_name or ""


def _queue_keys(ch: Channel, q: Queue) -> tuple[str, ...]:
    """The durable definition a reply about q depends on (none for a transient queue)."""
    return (ch.vhost.queue_key(q.name),) if q.persists else ()


def declare(ch: Channel, args: dict[str, Any]) -> None:
    conn = ch.connection
    q, _created = ch.vhost.declare_queue(args["queue"], args["passive"], args["durable"],
                                         args["exclusive"], args["auto_delete"],
                                         args["arguments"], conn)
    conn.last_queue_name = q.name
    if q.exclusive_owner is conn:
        conn.exclusive_queues.add(q)
    if not args["nowait"]:
        ch.send_synced(_queue_keys(ch, q), (50, 11), queue=q.name,
                       message_count=q.message_count, consumer_count=len(q.consumers))


def bind(ch: Channel, args: dict[str, Any]) -> None:
    vhost = ch.vhost
    q = vhost.get_queue(_queue_name(ch, args["queue"]), ch.connection)
    ex = vhost.get_exchange(args["exchange"])
    vhost.bind(ex, q, args["routing_key"], args["arguments"])
    if not args["nowait"]:
        ch.send_synced(ch.vhost.binding_definition_keys(ex, q, args["routing_key"],
                                                        args["arguments"]), (50, 21))


def unbind(ch: Channel, args: dict[str, Any]) -> None:
    vhost = ch.vhost
    name = _queue_name(ch, args["queue"])
    if not name:
        raise AMQPError(NOT_FOUND, "no previously declared queue")
    found = vhost.unbind_endpoints(args["exchange"], name, "queue")
    if found is None:  # queue or exchange gone: unbind-ok, as RabbitMQ
        ch.send((50, 51))
        return
    ex, q = found
    vhost.unbind(ex, q, args["routing_key"], args["arguments"], ch.connection)
    ch.send_synced(ch.vhost.binding_definition_keys(ex, q, args["routing_key"],
                                                    args["arguments"]), (50, 51))


def purge(ch: Channel, args: dict[str, Any]) -> None:
    q = ch.vhost.get_queue(_queue_name(ch, args["queue"]), ch.connection)
    count = q.purge()
    if not args["nowait"]:
        ch.send((50, 31), message_count=count)


def delete(ch: Channel, args: dict[str, Any]) -> None:
    vhost = ch.vhost
    name = _queue_name(ch, args["queue"])
    q = vhost.queues.get(name)
    if q is None:
        # Deleting a missing queue is not an error in RabbitMQ.
        if not args["nowait"]:
            ch.send((50, 41), message_count=0)
        return
    vhost.check_exclusive(q, ch.connection)
    if name.startswith("amq.") and not name.startswith("amq.gen-"):
        raise AMQPError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
    count = vhost.delete_queue(q, args["if_unused"], args["if_empty"])
    ch.connection.exclusive_queues.discard(q)
    if not args["nowait"]:
        ch.send_synced(_queue_keys(ch, q), (50, 41), message_count=count)


HANDLERS: dict[tuple[int, int], Handler] = {
    (50, 10): declare,
    (50, 20): bind,
    (50, 30): purge,
    (50, 40): delete,
    (50, 50): unbind,
}
