"""The direct exchange: a message goes to the destinations bound with exactly its routing key."""

from __future__ import annotations

from collections.abc import Hashable

from ._table import DestinationSet, TableExchange
from .base import Arguments

_NOWHERE: tuple[Hashable, ...] = ()


class DirectExchange(TableExchange):
    """Routing key -> destinations; arguments only distinguish bindings, never routing.

    route() returns a shared immutable tuple (no allocation per message); it stays valid
    after later binds and unbinds, which build a new tuple instead of changing it.
    """

    type_name = "direct"
    needs_headers = False

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[str, DestinationSet] = {}

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.add(destination, routing_key, arguments):
            return False
        entry = self._routes.get(routing_key)
        if entry is None:
            entry = self._routes[routing_key] = DestinationSet()
        entry.add(destination)
        return True

    def _forget(self, destination: Hashable, routing_key: str, arguments: Arguments) -> None:
        entry = self._routes[routing_key]
        entry.remove(destination)
        if not entry:
            del self._routes[routing_key]

    def route(self, routing_key: str, headers: Arguments | None) -> tuple[Hashable, ...]:
        entry = self._routes.get(routing_key)
        return _NOWHERE if entry is None else entry.snapshot()

