"""Exchange types: one small module each behind exchanges.base.ExchangeType."""

from __future__ import annotations

from exchanges.base import ExchangeType
from exchanges.direct import DirectExchange
from exchanges.fanout import FanoutExchange
from exchanges.headers import HeadersExchange
from exchanges.topic import TopicExchange

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
