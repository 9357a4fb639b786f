"""exchange.declare, delete, bind, unbind."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler


def declare(ch: Channel, args: dict[str, Any]) -> None:
    ex = ch.vhost.declare_exchange(args["exchange"], args["type"], args["passive"],
                                   args["durable"], args["auto_delete"], args["internal"],
                                   args["arguments"])
    if not args["nowait"]:
        ch.send_synced((ch.vhost.exchange_key(ex.name),) if ex.durable else (), (40, 11))


def delete(ch: Channel, args: dict[str, Any]) -> None:
    name = args["exchange"]
    ex = ch.vhost.exchanges.get(name)
    ch.vhost.delete_exchange(name, args["if_unused"])
    if not args["nowait"]:
        durable = ex is not None and ex.durable
        ch.send_synced((ch.vhost.exchange_key(name),) if durable else (), (40, 21))


def bind(ch: Channel, args: dict[str, Any]) -> None:
    vhost = ch.vhost
    dest = vhost.get_exchange(args["destination"])
    source = vhost.get_exchange(args["source"])
    vhost.bind(source, dest, args["routing_key"], args["arguments"])
    if not args["nowait"]:
        ch.send_synced(vhost.binding_definition_keys(source, dest, args["routing_key"],
                                                     args["arguments"]), (40, 31))


def unbind(ch: Channel, args: dict[str, Any]) -> None:
    vhost = ch.vhost
    found = vhost.unbind_endpoints(args["source"], args["destination"], "exchange")
    if found is None:  # source or destination gone: unbind-ok, as RabbitMQ
        if not args["nowait"]:
            ch.send((40, 51))
        return
    source, dest = found
    vhost.unbind(source, dest, args["routing_key"], args["arguments"])
    if not args["nowait"]:
        ch.send_synced(vhost.binding_definition_keys(source, dest, args["routing_key"],
                                                     args["arguments"]), (40, 51))


HANDLERS: dict[tuple[int, int], Handler] = {
    (40, 10): declare,
    (40, 20): delete,
    (40, 30): bind,
    (40, 40): unbind,
}
