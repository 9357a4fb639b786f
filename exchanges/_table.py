"""Bookkeeping shared by the exchange types: binding identity and destination sets.

RabbitMQ identifies a binding by (destination, routing key, arguments), so the same
key with different arguments is a second binding. Arguments are dicts (unhashable),
so BindingTable keys them by a frozen, type-tagged copy. DestinationSet is one routing
entry: it counts bindings per destination and hands route() an immutable tuple.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

from .base import Arguments

Binding = tuple[Hashable, str, Arguments]


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for an AMQP field value, equal only for equal typed values.

    The type tag keeps 1, 1.0 and True apart (RabbitMQ compares typed field tables);
    table keys are sorted because field-table order does not make a different binding.
    """
    if isinstance(value, dict):
        return ("table", tuple(sorted((str(k), freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(freeze(v) for v in value))
    if isinstance(value, bytearray):
        return ("bytes", bytes(value))
    return (type(value).__name__, value)


class BindingTable:
    """Every binding of one exchange, grouped by destination for unbind_destination."""

    __slots__ = ("_by_destination", "_count")

    def __init__(self) -> None:
        # destination -> {(routing_key, frozen arguments): arguments as bound}
        self._by_destination: dict[Hashable, dict[tuple[str, Hashable], Arguments]] = {}
        self._count = 0

    def add(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        """Record a binding; False when an identical one exists."""
        ident = (routing_key, freeze(arguments))
        entries = self._by_destination.setdefault(destination, {})
        if ident in entries:
            return False
        entries[ident] = dict(arguments)  # a copy: the caller may reuse its dict
        self._count += 1
        return True

    def remove(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        """Forget a binding; False when it did not exist."""
        entries = self._by_destination.get(destination)
        if entries is None or entries.pop((routing_key, freeze(arguments)), None) is None:
            return False
        if not entries:
            del self._by_destination[destination]
        self._count -= 1
        return True

    def remove_destination(self, destination: Hashable) -> list[tuple[str, Arguments]]:
        """Forget every binding to destination; returns them as (routing_key, arguments)."""
        entries = self._by_destination.pop(destination, None)
        if entries is None:
            return []
        self._count -= len(entries)
        return [(key, args) for (key, _), args in entries.items()]

    def __iter__(self) -> Iterator[Binding]:
        for destination, entries in self._by_destination.items():
            for (key, _), args in entries.items():
                yield destination, key, dict(args)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0


class DestinationSet:
    """Destinations reached through one routing entry, each once.

    Several bindings may lead to the same destination through the same entry (same key,
    different arguments), so membership is reference counted. snapshot() returns a tuple
    that is rebuilt lazily after membership changes: route() can hand it out without
    copying, and a caller holding it is unaffected by later binds and unbinds.
    """

    __slots__ = ("_counts", "_snapshot")

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self._snapshot: tuple[Hashable, ...] | None = ()

    def add(self, destination: Hashable) -> None:
        count = self._counts.get(destination, 0)
        self._counts[destination] = count + 1
        if count == 0:
            self._snapshot = None

    def remove(self, destination: Hashable) -> None:
        count = self._counts[destination] - 1
        if count:
            self._counts[destination] = count
        else:
            del self._counts[destination]
            self._snapshot = None

    def snapshot(self) -> tuple[Hashable, ...]:
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._snapshot = tuple(self._counts)
        return snapshot

    def __len__(self) -> int:
        return len(self._counts)

    def __bool__(self) -> bool:
        return bool(self._counts)


class TableExchange:
    """What every exchange type does the same way: the binding table, unbind,
    unbind_destination and listing. A type adds bind(), route() and _forget(), which
    drops one binding from its own routing structure."""

    def __init__(self) -> None:
        self._table = BindingTable()

    def _forget(self, destination: Hashable, routing_key: str, arguments: Arguments) -> None:
        raise NotImplementedError

    def unbind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        if not self._table.remove(destination, routing_key, arguments):
            return False
        self._forget(destination, routing_key, arguments)
        return True

    def unbind_destination(self, destination: Hashable) -> list[tuple[str, Arguments]]:
        removed = self._table.remove_destination(destination)
        for routing_key, arguments in removed:
            self._forget(destination, routing_key, arguments)
        return removed

    def bindings(self) -> Iterator[Binding]:
        return iter(self._table)

    def has_bindings(self) -> bool:
        return bool(self._table)
