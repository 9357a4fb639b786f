"""The interface every exchange type implements: a routing table, nothing else.

An exchange type knows nothing of queues, channels or sockets. It maps binding
keys (and, for headers exchanges, binding arguments) to opaque destinations,
which the broker sets to queue or exchange objects. Destinations must be
hashable. Routing never grows any table.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Protocol

Arguments = dict[str, Any]


class BindingError(ValueError):
    """A binding's arguments are invalid for this exchange type (406 by the broker)."""


class ExchangeType(Protocol):
    """A routing table for one exchange."""

    #: type name as used in exchange.declare ("direct", "fanout", ...)
    type_name: str
    #: True when route() needs the message headers (decoded lazily otherwise)
    needs_headers: bool

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        """Add a binding; False when an identical binding already exists."""

    def unbind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        """Remove a binding; False when it did not exist."""

    def unbind_destination(self, destination: Hashable) -> list[tuple[str, Arguments]]:
        """Remove every binding to destination; returns them as (routing_key, arguments)."""

    def route(self, routing_key: str, headers: Arguments | None) -> Iterable[Hashable]:
        """Destinations a message with this key (and headers) goes to; each once."""

    def bindings(self) -> Iterator[tuple[Hashable, str, Arguments]]:
        """Every binding as (destination, routing_key, arguments)."""

    def has_bindings(self) -> bool:
        """True when at least one binding exists (exchange.delete if-unused)."""
