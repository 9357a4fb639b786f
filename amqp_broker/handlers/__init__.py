"""Method handlers, one module per AMQP class, collected into one dispatch table.

A handler takes (channel, args) and either replies through the channel or
raises AMQPError; the connection translates errors in one place.
"""

from __future__ import annotations

from ..channel import Handler
from . import basic, channel, confirm, exchange, queue, tx

HANDLERS: dict[tuple[int, int], Handler] = {}
for module in (channel, exchange, queue, basic, confirm, tx):
    HANDLERS.update(module.HANDLERS)
