"""The headers exchange: bindings match message headers, the routing key is ignored.

Semantics follow RabbitMQ's rabbit_exchange_type_headers:
- x-match is "all" (the default), "any", "all-with-x" or "any-with-x"; anything else
  is refused at bind time (406 by the broker).
- "x-match" itself never takes part in matching; other arguments whose names start
  with "x-" are ignored by all/any and count for the -with-x variants.
- A binding argument with a void value (None) matches when the header is present,
  whatever its value.
- "all" with nothing left to compare matches every message (even one without
  headers); "any" with nothing left to compare matches none.
"""

from __future__ import annotations

from collections.abc import Hashable
from decimal import Decimal
from typing import Any

from ._table import TableExchange, freeze
from .base import Arguments, BindingError

_NOWHERE: tuple[Hashable, ...] = ()
_NO_HEADERS: Arguments = {}
_MODES = {"all": (False, False), "any": (True, False),
          "all-with-x": (False, True), "any-with-x": (True, True)}  # -> (match_any, with_x)
# The names RabbitMQ's error text uses for AMQP field types.
_TYPE_NAMES = {bool: "bool", int: "long", float: "double", bytes: "binary", dict: "table",
               list: "array", Decimal: "decimal", type(None): "void"}

#: one compiled condition: (header name, expected value, presence-only)
Condition = tuple[str, Any, bool]


def parse_x_match(arguments: Arguments) -> tuple[bool, bool]:
    """(match_any, with_x) for a binding's arguments, or BindingError."""
    mode = arguments.get("x-match", "all")
    if isinstance(mode, bytes):  # a longstr that did not decode as UTF-8
        mode = mode.decode("utf-8", "replace")
    if not isinstance(mode, str):
        kind = _TYPE_NAMES.get(type(mode), type(mode).__name__)
        raise BindingError(
            f"Invalid x-match field type {kind} (value {mode!r}); expected longstr")
    parsed = _MODES.get(mode)
    if parsed is None:
        raise BindingError(
            f'Invalid x-match field value <<"{mode}">>; '
            "expected all, any, all-with-x, or any-with-x")
    return parsed


def same_value(expected: Any, actual: Any) -> bool:
    """Field-value equality as Erlang's == sees AMQP values.

    Numbers compare by value (1 == 1.0), but booleans are atoms there, never numbers;
    strings and byte strings are both binaries; decimals only equal decimals.
    """
    if isinstance(expected, (str, bytes)) and isinstance(actual, (str, bytes)):
        if isinstance(expected, str):
            expected = expected.encode()
        if isinstance(actual, str):
            actual = actual.encode()
        return bool(expected == actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, Decimal) or isinstance(actual, Decimal):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(same_value(v, actual[k]) for k, v in expected.items()))
    if isinstance(expected, (list, tuple)):
        return (isinstance(actual, (list, tuple)) and len(expected) == len(actual)
                and all(same_value(e, a) for e, a in zip(expected, actual, strict=False)))
    return bool(expected == actual)


def compile_binding(arguments: Arguments) -> tuple[bool, tuple[Condition, ...]]:
    """(match_any, conditions) for a binding; raises BindingError for a bad x-match."""
    match_any, with_x = parse_x_match(arguments)
    conditions = tuple(
        (name, value, value is None)
        for name, value in sorted(arguments.items())
        if name != "x-match" and (with_x or not name.startswith("x-")))
    return match_any, conditions


def _all_match(conditions: tuple[Condition, ...], headers: Arguments) -> bool:
    for name, expected, presence_only in conditions:
        if name not in headers:
            return False
        if not presence_only and not same_value(expected, headers[name]):
            return False
    return True


def _any_match(conditions: tuple[Condition, ...], headers: Arguments) -> bool:
    for name, expected, presence_only in conditions:
        if name in headers and (presence_only or same_value(expected, headers[name])):
            return True
    return False


class HeadersExchange(TableExchange):
    """Headers matching; each binding's x-match is checked and compiled at bind time.

    route() tests every binding (as RabbitMQ does) and returns a fresh set, or a shared
    empty tuple when nothing matched; callers must treat the result as read-only.
    """

    type_name = "headers"
    needs_headers = True

    def __init__(self) -> None:
        super().__init__()
        # (destination, routing key, frozen arguments) -> (destination, match_any, conditions)
        self._matchers: dict[Hashable, tuple[Hashable, bool, tuple[Condition, ...]]] = {}

    def bind(self, destination: Hashable, routing_key: str, arguments: Arguments) -> bool:
        match_any, conditions = compile_binding(arguments)  # validate before recording
        if not self._table.add(destination, routing_key, arguments):
            return False
        ident = (destination, routing_key, freeze(arguments))
        self._matchers[ident] = (destination, match_any, conditions)
        return True

    def _forget(self, destination: Hashable, routing_key: str, arguments: Arguments) -> None:
        del self._matchers[(destination, routing_key, freeze(arguments))]

    def route(self, routing_key: str, headers: Arguments | None
              ) -> tuple[Hashable, ...] | set[Hashable]:
        if headers is None:
            headers = _NO_HEADERS
        found: set[Hashable] | None = None
        for destination, match_any, conditions in self._matchers.values():
            if found is not None and destination in found:
                continue
            if (_any_match if match_any else _all_match)(conditions, headers):
                if found is None:
                    found = set()
                found.add(destination)
        return _NOWHERE if found is None else found

