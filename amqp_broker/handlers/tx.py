"""tx.select, commit, rollback: publishes and settlements take effect at commit."""

from __future__ import annotations

from typing import Any

from ..channel import Channel, Handler
from ..exchanges.topic import RouteDeferred
from ..protocol import fast
from ..protocol.errors import PRECONDITION_FAILED, AMQPError


def select(ch: Channel, args: dict[str, Any]) -> None:
    if ch.confirm_mode:
        raise AMQPError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode", 90, 10)
    ch.tx_mode = True
    ch.send((90, 11))


def _require_tx(ch: Channel, method_id: int) -> None:
    if not ch.tx_mode:
        raise AMQPError(PRECONDITION_FAILED, "channel is not transactional", 90, method_id)


def commit(ch: Channel, args: dict[str, Any]) -> None:
    _require_tx(ch, 20)
    conn = ch.connection
    finished = conn.finished_routes
    vhost = ch.vhost
    # Route every publish first, a long topic match in slices while other connections are
    # served (this connection's input waits, then the commit is made again); the commit
    # itself then runs at once with every match done.
    for exchange, _ex_raw, _rk_raw, routing_key, _mandatory, props, _body in ch.tx_publishes:
        ex = vhost.exchanges.get(exchange)
        if ex is None:
            continue  # publish raises the 404 below
        try:
            vhost.route(ex, routing_key, lambda p=props: fast.message_headers(p), finished)
        except RouteDeferred as deferred:
            conn.route_later(deferred.task, ch, lambda: commit(ch, args), (90, 20))
            return
    publishes, settles = ch.tx_publishes, ch.tx_settles
    ch.tx_publishes, ch.tx_settles = [], []
    token = 0
    for exchange, ex_raw, rk_raw, routing_key, mandatory, props, body in publishes:
        token = max(token, ch.publish(exchange, ex_raw, rk_raw, routing_key, mandatory, props,
                                      body, finished))
    for taken, action in settles:
        ch.apply_settle(taken, action)
    # commit-ok means what a publisher confirm means: the persistent messages are on disk
    ch.send_after(token, (90, 21))


def rollback(ch: Channel, args: dict[str, Any]) -> None:
    _require_tx(ch, 30)
    ch.rollback()
    ch.send((90, 31))


HANDLERS: dict[tuple[int, int], Handler] = {
    (90, 10): select,
    (90, 20): commit,
    (90, 30): rollback,
}
