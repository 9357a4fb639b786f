"""The fanout exchange: every message goes to every bound destination, whatever its key."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from exchanges._table import Binding, BindingTable, DestinationSet
from exchanges.base import Arguments


class FanoutExchange:
    """All destinations, each once, however many bindings (keys, arguments) lead there.

    route() returns a shared immutable tuple (no allocation per message); it stays valid
    after later binds and unbinds, which build a new tuple instead of changing it.
    """

    type_name = "fanout"
    needs_headers = False

    def __init__(self) -> None:
        self._table = BindingTable()
        self._destinations = DestinationSet()

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.add(destination, routing_key, arguments):
            return False
        self._destinations.add(destination)
        return True

    def unbind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.remove(destination, routing_key, arguments):
            return False
        self._destinations.remove(destination)
        return True

    def unbind_destination(self, destination: Hashable) -> list[tuple[str, Arguments]]:
        removed = self._table.remove_destination(destination)
        for _ in removed:
            self._destinations.remove(destination)
        return removed

    def route(self, routing_key: str, headers: Arguments | None) -> tuple[Hashable, ...]:
        return self._destinations.snapshot()

    def bindings(self) -> Iterator[Binding]:
        return iter(self._table)

    def has_bindings(self) -> bool:
        return bool(self._table)
