"""The fanout exchange: every message goes to every bound destination, whatever its key."""

from __future__ import annotations

from collections.abc import Hashable

from ._table import DestinationSet, TableExchange
from .base import Arguments


class FanoutExchange(TableExchange):
    """All destinations, each once, however many bindings (keys, arguments) lead there.

    route() returns a shared immutable tuple (no allocation per message); it stays valid
    after later binds and unbinds, which build a new tuple instead of changing it.
    """

    type_name = "fanout"
    needs_headers = False

    def __init__(self) -> None:
        super().__init__()
        self._destinations = DestinationSet()

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.add(destination, routing_key, arguments):
            return False
        self._destinations.add(destination)
        return True

    def _forget(self, destination: Hashable, routing_key: str, arguments: Arguments) -> None:
        self._destinations.remove(destination)

    def route(self, routing_key: str, headers: Arguments | None) -> tuple[Hashable, ...]:
        return self._destinations.snapshot()

