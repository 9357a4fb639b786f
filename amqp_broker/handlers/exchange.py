"""exchange.declare, delete, bind, unbind."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler
from ..vhost import Exchange


def _binding_keys(ch: Channel, source: Exchange, dest: Exchange,
                  args: dict[str, Any]) -> tuple[str, ...]:
    """The durable definitions a reply about this binding depends on."""
    if not (source.durable and dest.durable):
        return ()
    vhost = ch.vhost
    return (vhost.binding_key(source.name, "exchange", dest.name, args["routing_key"],
                              args["arguments"]),
            vhost.exchange_key(source.name), vhost.exchange_key(dest.name))


def declare(ch: Channel, args: dict[str, Any]) -> None:
    ex = ch.vhost.declare_exchange(args["exchange"], args["type"], args["passive"],
                                   args["durable"], args["auto_delete"], args["internal"],
                                   args["arguments"])
    if not args["nowait"]:
        ch.send_synced((ch.vhost.exchange_key(ex.name),) if ex.durable else (), (40, 11))


def delete(ch: Channel, args: dict[str, Any]) -> None:
    ex = ch.vhost.exchanges.get(args["exchange"])
    ch.vhost.delete_exchange(args["exchange"], args["if_unused"])
    if not args["nowait"]:
        durable = ex is not None and ex.durable
        ch.send_synced((ch.vhost.exchange_key(ex.name),) if durable else (), (40, 21))


def bind(ch: Channel, args: dict[str, Any]) -> None:
    vhost = ch.vhost
    dest = vhost.get_exchange(args["destination"])
    source = vhost.get_exchange(args["source"])
    vhost.bind(source, dest, args["routing_key"], args["arguments"])
    if not args["nowait"]:
        ch.send_synced(_binding_keys(ch, source, dest, args), (40, 31))


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
        ch.send_synced(_binding_keys(ch, source, dest, args), (40, 51))


HANDLERS: dict[tuple[int, int], Handler] = {
    (40, 10): declare,
    (40, 20): delete,
    (40, 30): bind,
    (40, 40): unbind,
}
