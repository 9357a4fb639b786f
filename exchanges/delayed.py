"""The x-delayed-message exchange type, as the rabbitmq-delayed-message-exchange plugin
defines it: routing is that of the type named by the x-delayed-type argument (direct,
fanout, topic, headers), except that a message whose x-delay header asks for a delay
is held instead of routed (route() answers Delayed, which names no destination).

The hold itself (scheduling, storage, routing at the due time) is the broker's
(amqp_broker/delayed.py); this module only decides whether and for how long, and owns
the bindings through the inner type's routing table.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Hashable, Iterable, Iterator

from .base import Arguments, ExchangeType
from .direct import DirectExchange
from .fanout import FanoutExchange
from .headers import HeadersExchange
from .topic import TopicExchange

TYPE_NAME = "x-delayed-message"
#: the plugin delays only 0 < x-delay <= 2**32 - 1 ms (an Erlang timer's limit); any
#: other value routes the message at once
MAX_DELAY = 2**32 - 1

_INNER: dict[str, type[ExchangeType]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


class DeclareError(ValueError):
    """The declare's arguments are invalid for this type. unknown_type: x-delayed-type
    names no exchange type (503 COMMAND_INVALID in RabbitMQ 3.10, as exchange.declare
    of that type); otherwise 406 PRECONDITION_FAILED."""

    def __init__(self, text: str, unknown_type: bool = False) -> None:
        super().__init__(text)
        self.unknown_type = unknown_type


class Delayed(tuple[Hashable, ...]):
    """A route result: the destinations reached at once (empty for a message a delayed
    exchange holds, unless an alternate exchange or another exchange also took it) and
    holds, (delayed exchange table, delay in ms) for each delayed exchange holding it."""

    holds: list[tuple[DelayedExchange, int]]

    @classmethod
    def of(cls, now: Iterable[Hashable], holds: list[tuple[DelayedExchange, int]]) -> Delayed:
        result = cls(now)
        result.holds = holds
        return result


def check_arguments(arguments: Arguments) -> str:
    """The x-delayed-type of a declare's arguments; DeclareError in the plugin's words."""
    inner = arguments.get("x-delayed-type")
    if not isinstance(inner, (str, bytes)):  # missing, or not a string (longstr)
        raise DeclareError("Invalid argument, 'x-delayed-type' must be an existing "
                           "exchange type")
    name = inner if isinstance(inner, str) else inner.decode("utf-8", "replace")
    if name == TYPE_NAME:  # the plugin would validate itself forever
        raise DeclareError("Invalid argument, 'x-delayed-type' must be an existing "
                           "exchange type other than 'x-delayed-message'")
    if name not in _INNER:
        raise DeclareError(f"unknown exchange type '{name}'", unknown_type=True)
    return name


def delay_of(headers: Arguments) -> int:
    """The delay in ms an x-delay header asks for; 0 for none (absent, not a number,
    zero or less, or past MAX_DELAY), as the plugin reads it: integers as they are,
    floats and decimals truncated, strings of decimal digits parsed."""
    value = headers.get("x-delay")
    if value is None or isinstance(value, bool):
        return 0
    ms: int
    if isinstance(value, int):
        if type(value).__name__ == "Timestamp":  # 'T' is not one of the integer types
            return 0
        ms = value
    elif isinstance(value, (float, decimal.Decimal)):
        if isinstance(value, float) and not math.isfinite(value):
            return 0
        try:
            ms = int(value)
        except (ValueError, OverflowError, decimal.InvalidOperation):
            return 0
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        ms = int(value)
    else:
        return 0
    return ms if 0 < ms <= MAX_DELAY else 0


class DelayedExchange:
    """Bindings and routing of the x-delayed-type; route() holds delayed messages.

    uid is the scheduler's name for this exchange's held messages (0: none held yet).
    """

    type_name = TYPE_NAME
    needs_headers = True  # the x-delay header decides

    def __init__(self, arguments: Arguments) -> None:
        self.delayed_type = check_arguments(arguments)
        self.inner: ExchangeType = _INNER[self.delayed_type]()
        self.uid = 0

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        return self.inner.bind(destination, routing_key, arguments)

    def unbind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        return self.inner.unbind(destination, routing_key, arguments)

    def unbind_destination(self, destination: Hashable) -> list[tuple[str, Arguments]]:
        return self.inner.unbind_destination(destination)

    def route(self, routing_key: str, headers: Arguments | None) -> Iterable[Hashable]:
        if headers:
            ms = delay_of(headers)
            if ms:
                return Delayed.of((), [(self, ms)])
        return self.inner.route(routing_key, headers)

    def bindings(self) -> Iterator[tuple[Hashable, str, Arguments]]:
        return self.inner.bindings()

    def has_bindings(self) -> bool:
        return self.inner.has_bindings()

