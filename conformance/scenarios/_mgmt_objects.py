"""Shared steps of the management object scenarios (connections, channels, consumers,
exchanges, queues, bindings).

RabbitMQ's statistics reach its API every 5 s, so a scenario waits (`wait_for`) until
the object shows what it should before logging it; ours shows it at once. Fields are
logged by value where both brokers must agree, by shape where the value is the
broker's own (node names, ports, times, byte counts). Two sets of fields are left out
of the field lists and named here: Erlang's process internals, and counts this broker
does not keep per message (it keeps plain counters: the byte sizes are there, the
RAM/persistent splits of message counts are not).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ERLANG_ONLY = frozenset({"garbage_collection", "reductions", "reductions_details",
                         "backing_queue_status", "recv_cnt", "send_cnt"})
# message counts split by RAM and persistence, when a channel went idle, who declared
# an exchange
NOT_KEPT = frozenset({"messages_ram", "messages_ready_ram", "messages_unacknowledged_ram",
                      "messages_persistent", "messages_paged_out",
                      "message_bytes_persistent", "idle_since",
                      "user_who_performed_action"})


def keys(obj: Any) -> list[str] | Any:
    """The object's field names, less those named above."""
    if not isinstance(obj, dict):
        return obj
    return sorted(k for k in obj if k not in ERLANG_ONLY and k not in NOT_KEPT)


def wait_for(ctx, path: str, ready: Callable[[Any], bool], timeout: float = 15.0) -> Any:
    """GET path until ready(body) (RabbitMQ's statistics lag up to 5 s); the last body."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while True:
        status, body = ctx.api("GET", path)
        if status == 200 and ready(body):
            return body
        if time.monotonic() > deadline:
            return body
        time.sleep(0.25)


def pick(obj: Any, *fields: str) -> dict[str, Any]:
    """Chosen fields of an object (missing ones as "<missing>")."""
    if not isinstance(obj, dict):
        return {"not_an_object": obj}
    return {f: obj.get(f, "<missing>") for f in fields}


def find(items: Any, **match: Any) -> dict[str, Any] | None:
    """The first item whose fields equal match."""
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and all(item.get(k) == v for k, v in match.items()):
            return item
    return None
