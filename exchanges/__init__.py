"""Exchange types: one small module each behind exchanges.base.ExchangeType."""

from __future__ import annotations

from .base import Arguments, ExchangeType
from .delayed import DeclareError, DelayedExchange
from .direct import DirectExchange
from .fanout import FanoutExchange
from .headers import HeadersExchange
from .topic import TopicExchange

__all__ = [
    "TYPES",
    "DeclareError",
    "DelayedExchange",
    "DirectExchange",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
    "create",
]

#: exchange.declare type name -> class
TYPES: dict[str, type[ExchangeType]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
    "x-message-deduplication": FanoutExchange,  # routes as fanout (amqp_broker/dedup.py)
    "x-delayed-message": DelayedExchange,  # takes arguments: see create()
}


def create(type_name: str, arguments: Arguments | None = None) -> ExchangeType:
    """A fresh, empty routing table for type_name; KeyError for an unknown type,
    DeclareError for arguments the type refuses (x-delayed-message's x-delayed-type)."""
    if type_name == "x-delayed-message":
        return DelayedExchange(arguments or {})
    return TYPES[type_name]()
