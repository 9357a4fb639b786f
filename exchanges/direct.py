"""The direct exchange: a message goes to the destinations bound with exactly its routing key."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from exchanges._table import Binding, BindingTable, DestinationSet
from exchanges.base import Arguments

_NOWHERE: tuple[Hashable, ...] = ()


class DirectExchange:
    """Routing key -> destinations; arguments only distinguish bindings, never routing.

    route() returns a shared immutable tuple (no allocation per message); it stays valid
    after later binds and unbinds, which build a new tuple instead of changing it.
    """

    type_name = "direct"
    needs_headers = False

    def __init__(self) -> None:
        self._table = BindingTable()
        self._routes: dict[str, DestinationSet] = {}

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.add(destination, routing_key, arguments):
            return False
        entry = self._routes.get(routing_key)
        if entry is None:
            entry = self._routes[routing_key] = DestinationSet()
        entry.add(destination)
        return True

    def unbind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.remove(destination, routing_key, arguments):
            return False
        self._forget(destination, routing_key)
        return True

    def unbind_destination(self, destination: Hashable) -> list[tuple[str, Arguments]]:
        removed = self._table.remove_destination(destination)
        for routing_key, _ in removed:
            self._forget(destination, routing_key)
        return removed

    def _forget(self, destination: Hashable, routing_key: str) -> None:
        entry = self._routes[routing_key]
        entry.remove(destination)
        if not entry:
            del self._routes[routing_key]

    def route(self, routing_key: str, headers: Arguments | None) -> tuple[Hashable, ...]:
        entry = self._routes.get(routing_key)
        return _NOWHERE if entry is None else entry.snapshot()

    def bindings(self) -> Iterator[Binding]:
        return iter(self._table)

    def has_bindings(self) -> bool:
        return bool(self._table)
