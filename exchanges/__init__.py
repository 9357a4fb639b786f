"""Exchange types: one small module each behind exchanges.base.ExchangeType."""

from __future__ import annotations

from .base import ExchangeType
from .direct import DirectExchange
from .fanout import FanoutExchange
from .headers import HeadersExchange
from .topic import TopicExchange

__all__ = [
    "TYPES",
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
}


def create(type_name: str) -> ExchangeType:
    """A fresh, empty routing table for type_name; KeyError for an unknown type."""
    return TYPES[type_name]()
