"""queue.declare, bind, unbind, purge, delete."""

from __future__ import annotations

from pamqp import commands

from ..channel import Channel, Handlers
from ..protocol.errors import ACCESS_REFUSED, NOT_FOUND, AMQPError
from ..queue import Queue


def _queue_name(ch: Channel, name: str) -> str:
    # An empty name means the last queue declared on this channel, as in RabbitMQ.
    return name or ch.connection.last_queue_name or ""


def _queue_keys(ch: Channel, q: Queue) -> tuple[str, ...]:
    """The durable definition a reply about q depends on (none for a transient queue)."""
    return (ch.vhost.queue_key(q.name),) if q.persists else ()


def declare(ch: Channel, method: commands.Queue.Declare) -> None:
    conn = ch.connection
    q, _created = ch.vhost.declare_queue(method.queue, method.passive, method.durable,
                                         method.exclusive, method.auto_delete,
                                         method.arguments, conn,
                                         ch.declare_checks("queue", method.arguments))
    conn.last_queue_name = q.name
    if q.exclusive_owner is conn:
        conn.exclusive_queues.add(q)
    if not method.nowait:
        ch.send_synced(_queue_keys(ch, q), commands.Queue.DeclareOk, queue=q.name,
                       message_count=q.message_count, consumer_count=len(q.consumers))


def bind(ch: Channel, method: commands.Queue.Bind) -> None:
    vhost = ch.vhost
    name = _queue_name(ch, method.queue)
    ch.permit_binding("queue", name, method.exchange, method.routing_key)
    q = vhost.get_queue(name, ch.connection)
    ex = vhost.get_exchange(method.exchange)
    vhost.bind(ex, q, method.routing_key, method.arguments)
    if not method.nowait:
        ch.send_synced(ch.vhost.binding_definition_keys(ex, q, method.routing_key,
                                                        method.arguments), commands.Queue.BindOk)


def unbind(ch: Channel, method: commands.Queue.Unbind) -> None:
    vhost = ch.vhost
    name = _queue_name(ch, method.queue)
    if not name:
        raise AMQPError(NOT_FOUND, "no previously declared queue")
    ch.permit_binding("queue", name, method.exchange, method.routing_key)
    found = vhost.unbind_endpoints(method.exchange, name, "queue")
    if found is None:  # queue or exchange gone: unbind-ok, as RabbitMQ
        ch.send(commands.Queue.UnbindOk)
        return
    ex, q = found
    vhost.unbind(ex, q, method.routing_key, method.arguments, ch.connection)
    ch.send_synced(ch.vhost.binding_definition_keys(ex, q, method.routing_key,
                                                    method.arguments), commands.Queue.UnbindOk)


def purge(ch: Channel, method: commands.Queue.Purge) -> None:
    name = _queue_name(ch, method.queue)
    ch.permit("queue", name, "read")
    q = ch.vhost.get_queue(name, ch.connection)
    count = q.purge()
    if not method.nowait:
        ch.send(commands.Queue.PurgeOk, message_count=count)


def delete(ch: Channel, method: commands.Queue.Delete) -> None:
    vhost = ch.vhost
    name = _queue_name(ch, method.queue)
    ch.permit("queue", name, "configure")
    q = vhost.queues.get(name)
    if q is None:
        # Deleting a missing queue is not an error in RabbitMQ.
        if not method.nowait:
            ch.send(commands.Queue.DeleteOk, message_count=0)
        return
    vhost.check_exclusive(q, ch.connection)
    if name.startswith("amq.") and not name.startswith("amq.gen-"):
        raise AMQPError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
    count = vhost.delete_queue(q, method.if_unused, method.if_empty)
    ch.connection.exclusive_queues.discard(q)
    if not method.nowait:
        ch.send_synced(_queue_keys(ch, q), commands.Queue.DeleteOk, message_count=count)


HANDLERS: Handlers = {
    commands.Queue.Declare: declare,
    commands.Queue.Bind: bind,
    commands.Queue.Purge: purge,
    commands.Queue.Delete: delete,
    commands.Queue.Unbind: unbind,
}
