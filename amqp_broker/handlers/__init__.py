"""Method handlers, one module per AMQP class, collected into one dispatch table.

A handler takes (channel, the pamqp method object) and either replies through
the channel or raises AMQPError; the connection translates errors in one place.
"""

from __future__ import annotations

from ..channel import Handler
from ..protocol.codec import MethodKey, key_of
from . import basic, channel, confirm, exchange, queue, tx

# (class id, method id) -> handler: the connection looks a frame up by its first bytes
HANDLERS: dict[MethodKey, Handler] = {
    key_of(cls): handler
    for module in (channel, exchange, queue, basic, confirm, tx)
    for cls, handler in module.HANDLERS.items()}
