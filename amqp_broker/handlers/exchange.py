"""exchange.declare, delete, bind, unbind."""

from __future__ import annotations

from pamqp import commands

from ..channel import Channel, Handlers


def declare(ch: Channel, method: commands.Exchange.Declare) -> None:
    ex = ch.vhost.declare_exchange(method.exchange, method.exchange_type, method.passive,
                                   method.durable, method.auto_delete, method.internal,
                                   method.arguments,
                                   ch.declare_checks("exchange", method.arguments))
    if not method.nowait:
        keys = (ch.vhost.exchange_key(ex.name),) if ex.durable else ()
        ch.send_synced(keys, commands.Exchange.DeclareOk)


def delete(ch: Channel, method: commands.Exchange.Delete) -> None:
    name = method.exchange
    ex = ch.vhost.exchanges.get(name)
    if name and not name.startswith("amq."):  # those are refused first (delete_exchange)
        ch.permit("exchange", name, "configure")
    ch.vhost.delete_exchange(name, method.if_unused)
    if not method.nowait:
        durable = ex is not None and ex.durable
        keys = (ch.vhost.exchange_key(name),) if durable else ()
        ch.send_synced(keys, commands.Exchange.DeleteOk)


def bind(ch: Channel, method: commands.Exchange.Bind) -> None:
    vhost = ch.vhost
    ch.permit_binding("exchange", method.destination, method.source, method.routing_key)
    dest = vhost.get_exchange(method.destination)
    source = vhost.get_exchange(method.source)
    vhost.bind(source, dest, method.routing_key, method.arguments)
    if not method.nowait:
        ch.send_synced(vhost.binding_definition_keys(source, dest, method.routing_key,
                                                     method.arguments), commands.Exchange.BindOk)


def unbind(ch: Channel, method: commands.Exchange.Unbind) -> None:
    vhost = ch.vhost
    ch.permit_binding("exchange", method.destination, method.source, method.routing_key)
    found = vhost.unbind_endpoints(method.source, method.destination, "exchange")
    if found is None:  # source or destination gone: unbind-ok, as RabbitMQ
        if not method.nowait:
            ch.send(commands.Exchange.UnbindOk)
        return
    source, dest = found
    vhost.unbind(source, dest, method.routing_key, method.arguments)
    if not method.nowait:
        ch.send_synced(vhost.binding_definition_keys(source, dest, method.routing_key,
                                                     method.arguments), commands.Exchange.UnbindOk)


HANDLERS: Handlers = {
    commands.Exchange.Declare: declare,
    commands.Exchange.Delete: delete,
    commands.Exchange.Bind: bind,
    commands.Exchange.Unbind: unbind,
}
