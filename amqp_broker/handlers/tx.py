"""tx.select, commit, rollback: publishes and settlements take effect at commit."""

from __future__ import annotations

from pamqp import commands

from ..channel import Channel, Handlers
from ..exchanges.topic import RouteDeferred
from ..protocol import fast
from ..protocol.errors import PRECONDITION_FAILED, AMQPError


def select(ch: Channel, method: commands.Tx.Select) -> None:
    if ch.confirm_mode:
        raise AMQPError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode", 90, 10)
    ch.tx_mode = True
    ch.send(commands.Tx.SelectOk)


def _require_tx(ch: Channel, method_id: int) -> None:
    if not ch.tx_mode:
        raise AMQPError(PRECONDITION_FAILED, "channel is not transactional", 90, method_id)


def commit(ch: Channel, method: commands.Tx.Commit) -> None:
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
            conn.route_later(deferred.task, ch, lambda: commit(ch, method), (90, 20))
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
    ch.send_after(token, commands.Tx.CommitOk)


def rollback(ch: Channel, method: commands.Tx.Rollback) -> None:
    _require_tx(ch, 30)
    ch.rollback()
    ch.send(commands.Tx.RollbackOk)


HANDLERS: Handlers = {
    commands.Tx.Select: select,
    commands.Tx.Commit: commit,
    commands.Tx.Rollback: rollback,
}
