"""GET /api/overview (rabbit_mgmt_wm_overview): product and version fields, totals, message
rates, and, for monitoring users, the node, its listeners and web contexts.

Users that are not monitoring see the totals of the vhosts they have permissions in (and
their own connections), without node, listeners or contexts, as in RabbitMQ.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .. import __version__
from .auth import broker_of, login, visible_vhosts
from .errors import bad_request
from .listing import reply_item
from .res_nodes import (
    PRODUCT_NAME,
    RABBITMQ_VERSION,
    churn_counters,
    cluster_name,
    contexts,
    exchange_types,
    listeners,
    node_name,
)

MESSAGE_STATS = ("ack", "confirm", "deliver", "deliver_get", "deliver_no_ack", "disk_reads",
                 "disk_writes", "drop_unroutable", "get", "get_empty", "get_no_ack", "publish",
                 "redeliver", "return_unroutable")
QUEUE_TOTALS = ("messages", "messages_ready", "messages_unacknowledged")


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise bad_request(f"invalid value for {name}: {raw!r}") from None


def _rates_module() -> Any:
    try:
        from . import rates
    except ImportError:  # message rates not available
        return None
    return rates


def _message_counts(rates: Any, broker: Any, sessions: list[Any], everyone: bool,
                    queues: list[Any]) -> dict[str, int]:
    """The message_stats counts: broker-wide for monitoring users, else those of the
    user's own connections' channels (rates.py keeps the counters)."""
    counts = dict.fromkeys(MESSAGE_STATS, 0)
    if rates is not None and hasattr(rates, "broker_counts"):
        if everyone:
            found = rates.broker_counts(broker)
        else:
            found = {}
            for session in sessions:
                for ch in getattr(session, "channels", {}).values():
                    for field, value in rates.channel_counts(ch).items():
                        found[field] = found.get(field, 0) + value
        for field in MESSAGE_STATS:
            counts[field] = int(found.get(field, 0))
        return counts
    if everyone:
        counts["publish"] = broker.published
        counts["drop_unroutable"] = broker.unroutable
    counts["deliver_get"] = sum(getattr(q, "delivered", 0) for q in queues)
    counts["ack"] = sum(getattr(q, "acked", 0) for q in queues)
    return counts


def overview(request: Request) -> dict[str, Any]:
    user = login(request)
    broker = broker_of(request)
    vhosts = set(visible_vhosts(request))
    queues = [q for name, vhost in broker.vhosts.items() if name in vhosts
              for q in vhost.queues.values()]
    exchanges = sum(len(vhost.exchanges) for name, vhost in broker.vhosts.items()
                    if name in vhosts)
    sessions: list[Any] = [s for s in broker.connections
                           if user.is_monitor or getattr(s, "user", None) == user.name]
    channels = sum(len(getattr(s, "channels", {})) for s in sessions)
    consumers = sum(len(q.consumers) for q in queues)
    ready = sum(q.ready_count for q in queues)
    unacked = sum(q.unacked for q in queues)
    totals = {"messages": ready + unacked, "messages_ready": ready,
              "messages_unacknowledged": unacked}
    rates = _rates_module()
    counters = _message_counts(rates, broker, sessions, user.is_monitor, queues)
    sampler = rates.rates_for(broker) if rates is not None else None
    msg_age = _float_param(request, "msg_rates_age")
    msg_incr = _float_param(request, "msg_rates_incr")
    len_age = _float_param(request, "lengths_age")
    len_incr = _float_param(request, "lengths_incr")

    def details(field: str, age: float | None, incr: float | None) -> Any:
        # broker-wide rates (and their history) only for users who see everything
        if sampler is None or not user.is_monitor or field not in rates.TOTAL_FIELDS:
            return {"rate": 0.0}
        return sampler.total_details(field, age, incr)

    message_stats: dict[str, Any] = {}
    for field in MESSAGE_STATS:
        message_stats[field] = counters[field]
        message_stats[field + "_details"] = details(field, msg_age, msg_incr)
    queue_totals: dict[str, Any] = {}
    for field in QUEUE_TOTALS:
        queue_totals[field] = totals[field]
        queue_totals[field + "_details"] = details(field, len_age, len_incr)
    churn: dict[str, Any] = {}
    for field, value in sorted(churn_counters(broker).items()):
        churn[field] = value
        churn[field + "_details"] = {"rate": 0.0}

    out: dict[str, Any] = {
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400],
                                      "basic": [600, 3600], "detailed": [600]},
        "exchange_types": exchange_types(),
        "product_version": __version__,
        "product_name": PRODUCT_NAME,
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": cluster_name(broker),
        "erlang_version": platform.python_version(),  # the runtime's version
        "erlang_full_version": f"Python {sys.version}",
        "release_series_support_status": "supported",
        "disable_stats": False,
        "enable_queue_totals": False,
        "message_stats": message_stats,
        "churn_rates": churn,
        "queue_totals": queue_totals,
        "object_totals": {"channels": channels, "connections": len(sessions),
                          "consumers": consumers, "exchanges": exchanges,
                          "queues": len(queues)},
        "statistics_db_event_queue": 0,
    }
    if user.is_monitor:
        out["node"] = node_name(broker)
        out["listeners"] = listeners(request)
        out["contexts"] = contexts(request)
    return out


async def get_overview(request: Request) -> JSONResponse:
    return reply_item(request, overview(request))


def routes() -> list[BaseRoute]:
    return [Route("/api/overview", get_overview, methods=["GET"])]
