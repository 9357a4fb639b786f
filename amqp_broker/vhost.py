"""A virtual host: its exchanges, queues and bindings, and routing between them.

Every operation that can fail raises AMQPError with RabbitMQ's reply code and
text. Durable definitions are written through to the message store.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from . import exchanges, policies, queue_args, tables
from .dedup import ExchangeDedup, for_exchange
from .exchanges._table import freeze
from .exchanges.base import BindingError, ExchangeType
from .exchanges.delayed import DeclareError, Delayed
from .exchanges.topic import Finished, route_in_slices
from .protocol.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    AMQPError,
)
from .queue import Queue
from .stream import StreamQueue

if TYPE_CHECKING:
    from .broker import Broker

STANDARD_EXCHANGES = (
    ("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
    ("amq.headers", "headers"), ("amq.match", "headers"),
)


# a declare's permission check: (name, whether the declare creates it); raises AMQPError
Authorize = Callable[[str, bool], None]


class Exchange:
    def __init__(self, vhost: VHost, name: str, type_name: str, durable: bool,
                 auto_delete: bool, internal: bool, arguments: dict[str, Any]) -> None:
        self.vhost = vhost
        self.name = name
        self.type_name = type_name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments
        self.table: ExchangeType = exchanges.create(type_name, arguments)
        # x-message-deduplication (dedup.py): None for most exchanges
        self.dedup: ExchangeDedup | None = for_exchange(self)
        self.needs_headers = self.table.needs_headers or self.dedup is not None
        self.has_exchange_destinations = False  # exchange-to-exchange bindings present
        self.deleted = False
        # the policies that apply (policies.apply_exchange) and the alternate exchange
        # they and the arguments give (the argument wins)
        self.applied: policies.Applied = policies.NONE
        self.alternate: str | None = policies.alternate_of(arguments, policies.NONE)

    def __repr__(self) -> str:
        return f"<Exchange {self.name!r} {self.type_name}>"


def _require_equivalent(what: str, checks: Iterable[tuple[str, Any, Any]]) -> None:
    """406 for the first (argument, received, current) that differs, in RabbitMQ's words."""
    for arg, received, current in checks:
        if received != current:
            raise AMQPError(PRECONDITION_FAILED, f"inequivalent arg '{arg}' for {what}: "
                            f"received {_show(received)} but current is {_show(current)}")


class VHost:
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self.refusing_queues = 0  # queues with a reject-publish overflow policy
        self.expiring_queues: set[Queue] = set()  # queues with TTLs or x-expires (the sweep)
        # dead letters routed but not yet enqueued (see deadletter.dead_letter)
        # (exchange, routing key, properties, body, target queues) of each
        self.dead_letters: deque[tuple[str, str, bytes, bytes, list[Queue]]] = deque()
        self.dead_lettering = False
        self.streams = 0  # stream queues (amqp_broker/stream.py) in this vhost
        self.default_exchange = Exchange(self, "", "direct", True, False, False, {})
        self.exchanges[""] = self.default_exchange
        for name_, type_name in STANDARD_EXCHANGES:
            self.exchanges[name_] = Exchange(self, name_, type_name, True, False, False, {})

    # --- lookups -----------------------------------------------------------
    def where(self) -> str:
        return f"in vhost '{self.name}'"

    def get_exchange(self, name: str) -> Exchange:
        ex = self.exchanges.get(name)
        if ex is None:
            raise AMQPError(NOT_FOUND, f"no exchange '{name}' {self.where()}")
        return ex

    def get_queue(self, name: str, connection: object | None = None) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise AMQPError(NOT_FOUND, f"no queue '{name}' {self.where()}")
        if connection is not None:
            self.check_exclusive(q, connection)
        return q

    def check_exclusive(self, q: Queue, connection: object) -> None:
        if q.exclusive_owner is not None and q.exclusive_owner is not connection:
            raise self._locked(q)

    def _locked(self, q: Queue) -> AMQPError:
        return AMQPError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked queue '{q.name}' {self.where()}. "
            "It could be originally declared on another connection or the exclusive "
            "property value does not match that of the original declaration.")

    # --- exchanges ---------------------------------------------------------
    def declare_exchange(self, name: str, type_name: str, passive: bool, durable: bool,
                         auto_delete: bool, internal: bool, arguments: dict[str, Any],
                         authorize: Authorize | None = None) -> Exchange:
        # RabbitMQ's order: passive skips the type; the default exchange is refused
        # either way; an existing amq.* exchange is checked for equivalence (406),
        # only a new one is refused for its name (403).
        if not passive and type_name not in exchanges.TYPES:
            raise AMQPError(COMMAND_INVALID, f"unknown exchange type '{type_name}'")
        if name == "":
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        if passive:
            return self.get_exchange(name)
        existing = self.exchanges.get(name)
        if authorize is not None:  # the caller's permission checks, where RabbitMQ makes them
            authorize(name, existing is None)
        if existing is not None:
            self._check_exchange_equivalent(existing, type_name, durable, auto_delete,
                                            internal, arguments)
            return existing
        if name.startswith("amq."):
            raise AMQPError(ACCESS_REFUSED,
                            f"exchange name '{name}' contains reserved prefix 'amq.*'")
        try:
            ex = Exchange(self, name, type_name, durable, auto_delete, internal, arguments)
        except DeclareError as exc:  # x-delayed-message's x-delayed-type
            raise AMQPError(COMMAND_INVALID if exc.unknown_type else PRECONDITION_FAILED,
                            str(exc)) from None
        policies.apply_exchange(ex, policies.for_exchange(self, name))
        self.exchanges[name] = ex
        if durable:
            self.broker.save_definition(self.exchange_key(name), {
                "kind": "exchange", "vhost": self.name, "name": name, "type": type_name,
                "auto_delete": auto_delete, "internal": internal, "arguments": arguments})
        return ex

    def _check_exchange_equivalent(self, ex: Exchange, type_name: str, durable: bool,
                                   auto_delete: bool, internal: bool,
                                   arguments: dict[str, Any]) -> None:
        _require_equivalent(f"exchange '{ex.name}' {self.where()}", (
            ("type", type_name, ex.type_name),
            ("durable", durable, ex.durable),
            ("auto_delete", auto_delete, ex.auto_delete),
            ("internal", internal, ex.internal)))

    def delete_exchange(self, name: str, if_unused: bool) -> None:
        if name == "":
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        if name.startswith("amq."):
            raise AMQPError(ACCESS_REFUSED, f"deletion of system exchange '{name}' "
                            f"{self.where()} not allowed")
        ex = self.exchanges.get(name)
        if ex is None:
            # RabbitMQ answers delete-ok for a missing exchange (idempotent delete).
            return
        if if_unused and ex.table.has_bindings():
            raise AMQPError(PRECONDITION_FAILED, f"exchange '{name}' {self.where()} in use")
        self._remove_exchange(ex)

    def _remove_exchange(self, ex: Exchange) -> None:
        ex.deleted = True
        del self.exchanges[ex.name]
        for dest, key, args in list(ex.table.bindings()):
            ex.table.unbind(dest, key, args)
            self._forget_binding(ex, dest, key, args)
        # bindings where this exchange is the destination
        for source in list(self.exchanges.values()):
            if source.has_exchange_destinations:
                for dest, key, args in list(source.table.bindings()):
                    if dest is ex:
                        self.unbind(source, ex, key, args)
        if ex.durable:
            self.broker.save_definition(self.exchange_key(ex.name), None)
        if ex.dedup is not None:
            ex.dedup.close()
        if ex.type_name == "x-delayed-message":  # its held messages go too
            self.broker.delayed.forget(ex)

    # --- queues ------------------------------------------------------------
    def declare_queue(self, name: str, passive: bool, durable: bool, exclusive: bool,
                      auto_delete: bool, arguments: dict[str, Any],
                      connection: object,
                      authorize: Authorize | None = None) -> tuple[Queue, bool]:
        """Returns (queue, created). authorize(name, new) runs once the name is known."""
        if passive:
            return self.get_queue(name, connection), False
        self.broker.counters.queues_declared += 1
        if name == "":
            queue_args.check_server_named(arguments)
            name = "amq.gen-" + secrets.token_urlsafe(16)
        elif name.startswith("amq."):
            raise AMQPError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
        existing = self.queues.get(name)
        if authorize is not None:
            authorize(name, existing is None)
        if existing is not None:
            # RabbitMQ's strict check: the owner must be this connection exactly when
            # exclusive is asked; another connection's queue, or an exclusive flag that
            # differs from the original declaration, is 405 (never a 406)
            if existing.exclusive_owner is not (connection if exclusive else None):
                raise self._locked(existing)
            self._check_queue_equivalent(existing, durable, exclusive, auto_delete, arguments)
            existing.last_used = time.monotonic()
            return existing, False
        if connection is not None:  # a client's declare, not a recovered definition
            queue_args.check_declare(arguments, name, self.name, durable and not exclusive,
                                     exclusive, auto_delete)
        applied = policies.for_queue(self, name, arguments)
        args = policies.queue_args_for(name, self.name, arguments, applied)
        kind = StreamQueue if args.queue_type == "stream" else Queue
        q = kind(self, name, durable, connection if exclusive else None, auto_delete, arguments,
                 args)
        if kind is StreamQueue:
            self.streams += 1
        q.applied = applied
        self.queues[name] = q
        self.broker.counters.queues_created += 1
        if q.refusing:
            self.refusing_queues += 1
        if q.ttl is not None or q.args.expires is not None:
            self.expiring_queues.add(q)
        # the default exchange routes by queue name straight from self.queues (see route)
        if q.persists:
            self.broker.save_definition(self.queue_key(name), {
                "kind": "queue", "vhost": self.name, "name": name,
                "auto_delete": auto_delete, "arguments": arguments})
            if self.broker.orphans:
                self.broker.adopt_orphans(q)
        return q, True

    def _check_queue_equivalent(self, q: Queue, durable: bool, exclusive: bool,
                                auto_delete: bool, arguments: dict[str, Any]) -> None:
        # exclusive already matches (405 otherwise); an exclusive queue is never durable
        # in RabbitMQ, whatever the flag said, so its durable flag is not compared
        checks: list[tuple[str, Any, Any]] = [
            ("durable", durable and not exclusive, q.durable and not exclusive),
            ("auto_delete", auto_delete, q.auto_delete)]
        _require_equivalent(f"queue '{q.name}' {self.where()}", checks)
        # the arguments of the queue's type, in RabbitMQ's order and words
        changed = queue_args.inequivalent(q.arguments, arguments)
        if changed:
            raise AMQPError(PRECONDITION_FAILED, f"inequivalent arg '{changed[0]}' for queue "
                            f"'{q.name}' {self.where()}: received {changed[1]} but current is "
                            f"{changed[2]}")

    def delete_queue(self, q: Queue, if_unused: bool = False, if_empty: bool = False) -> int:
        if isinstance(q, StreamQueue):  # RabbitMQ ignores if-unused and if-empty, counts 0
            self.remove_queue(q)
            return 0
        if if_unused and q.consumers:
            raise AMQPError(PRECONDITION_FAILED, f"queue '{q.name}' {self.where()} in use")
        if if_empty and q.ready:
            raise AMQPError(PRECONDITION_FAILED, f"queue '{q.name}' {self.where()} not empty")
        return self.remove_queue(q)

    def remove_queue(self, q: Queue) -> int:
        """Delete a queue unconditionally: consumers cancelled, bindings and data gone."""
        if q.deleted:
            return 0
        q.deleted = True
        self.broker.counters.queues_deleted += 1
        self.queues.pop(q.name, None)
        count = q.ready_count
        for consumer in list(q.consumers):
            consumer.channel.cancel_by_server(consumer)
        q.consumers.clear()
        q.ready.clear()
        q.drop_spool(unstore=False)  # the store forgets the queue's refs at once below
        for ex in list(self.exchanges.values()):
            if ex is self.default_exchange:
                continue
            removed = ex.table.unbind_destination(q)
            if removed:
                for key, args in removed:
                    self._forget_binding(ex, q, key, args)
                self._maybe_auto_delete(ex)
        if q.persists:
            self.broker.save_definition(self.queue_key(q.name), None)
            self.broker.store.delete_queue(q.store_key)
        if q.refusing:
            self.refusing_queues -= 1
        self.expiring_queues.discard(q)
        if isinstance(q, StreamQueue):
            self.streams -= 1
            q.destroy()
        return count

    # --- bindings ----------------------------------------------------------
    def bind(self, source: Exchange, dest: Queue | Exchange, routing_key: str,
             arguments: dict[str, Any]) -> None:
        if source is self.default_exchange or dest is self.default_exchange:
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        try:
            added = source.table.bind(dest, routing_key, arguments)
        except BindingError as exc:
            raise AMQPError(PRECONDITION_FAILED, str(exc)) from None
        if isinstance(dest, Exchange):
            source.has_exchange_destinations = True
        if added and source.durable and _persists(dest):
            kind = "queue" if isinstance(dest, Queue) else "exchange"
            self.broker.save_definition(
                self.binding_key(source.name, kind, dest.name, routing_key, arguments),
                {"kind": "binding", "vhost": self.name, "source": source.name,
                 "destination_kind": kind, "destination": dest.name,
                 "routing_key": routing_key, "arguments": arguments})

    def unbind_endpoints(self, source: str, dest: str,
                         dest_kind: str) -> tuple[Exchange, Queue | Exchange] | None:
        """The (source, destination) of a queue.unbind/exchange.unbind, or None when either
        no longer exists: RabbitMQ's unbind is idempotent and answers unbind-ok then. The
        default exchange is refused first, as there."""
        if source == "" or (dest == "" and dest_kind == "exchange"):
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        found_source = self.exchanges.get(source)
        found_dest = (self.queues if dest_kind == "queue" else self.exchanges).get(dest)
        if found_source is None or found_dest is None:
            return None
        return found_source, found_dest

    def unbind(self, source: Exchange, dest: Queue | Exchange, routing_key: str,
               arguments: dict[str, Any], connection: object | None = None) -> None:
        """Remove a binding; one that does not exist is no error. Another connection's
        exclusive queue is locked (405) only when the binding exists, as in RabbitMQ."""
        if source is self.default_exchange or dest is self.default_exchange:
            raise AMQPError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        if source.table.unbind(dest, routing_key, arguments):
            if (connection is not None and isinstance(dest, Queue)
                    and dest.exclusive_owner not in (None, connection)):
                source.table.bind(dest, routing_key, arguments)  # put it back untouched
                raise self._locked(dest)
            self._forget_binding(source, dest, routing_key, arguments)
            self._maybe_auto_delete(source)

    def _forget_binding(self, source: Exchange, dest: Hashable, routing_key: str,
                        arguments: dict[str, Any]) -> None:
        if isinstance(dest, (Queue, Exchange)) and source.durable and _persists(dest):
            kind = "queue" if isinstance(dest, Queue) else "exchange"
            self.broker.save_definition(
                self.binding_key(source.name, kind, dest.name, routing_key, arguments), None)

    def _maybe_auto_delete(self, ex: Exchange) -> None:
        if ex.auto_delete and not ex.deleted and not ex.table.has_bindings():
            self._remove_exchange(ex)

    # --- routing -----------------------------------------------------------
    def route(self, ex: Exchange, routing_key: str, headers_of: Any,
              finished: Finished | None = None) -> Collection[Queue]:
        """Queues a message goes to. headers_of() decodes the headers table lazily.

        As RabbitMQ (rabbit_exchange:route1): every exchange reached, the first one or
        one behind an exchange-to-exchange binding, whose own bindings match nothing
        hands the message to its alternate-exchange; each exchange is visited once.
        With finished (a publishing connection's), a topic match longer than one slice
        raises RouteDeferred instead of holding the event loop (route_in_slices).
        """
        if ex is self.default_exchange:  # the common case, kept short
            q = self.queues.get(routing_key)
            return (q,) if q is not None else ()
        headers = headers_of() if ex.needs_headers else None
        found = self._own_route(ex, routing_key, headers, finished)
        if not ex.has_exchange_destinations and (found or ex.alternate is None):
            return found  # type: ignore[return-value]
        queues: set[Queue] = set()
        holds: list[Any] = []  # (exchange table, ms) of delayed-message exchanges reached
        seen: set[Any] = {ex}
        pending: list[tuple[Exchange, Iterable[Any]]] = [(ex, found)]
        while pending:
            source, dests = pending.pop()
            if dests.__class__ is Delayed:
                holds.extend(dests.holds)
            if not dests:
                alt = self._alternate_of(source)
                if alt is not None and alt not in seen:
                    dests = (alt,)
            dest: Any
            for dest in dests:
                if isinstance(dest, Queue):
                    queues.add(dest)
                elif dest not in seen:
                    seen.add(dest)
                    if dest.needs_headers and headers is None:
                        headers = headers_of()
                    pending.append((dest, self._own_route(dest, routing_key, headers, finished)))
        return Delayed.of(queues, holds) if holds else queues  # type: ignore[return-value]

    def _own_route(self, ex: Exchange, routing_key: str, headers: Any,
                   finished: Finished | None) -> Iterable[Any]:
        """What ex's own bindings match (the default exchange: the queue of that name);
        with finished, a long topic match may raise RouteDeferred."""
        if ex is self.default_exchange:
            q = self.queues.get(routing_key)
            return (q,) if q is not None else ()
        if finished is None:
            found = ex.table.route(routing_key, headers)
        else:
            found = route_in_slices(ex.table, routing_key, headers, finished)
        if ex.dedup is not None and ex.dedup.duplicate(headers):
            return ()  # seen before: not routed (dedup.py)
        return found

    def _alternate_of(self, ex: Exchange) -> Exchange | None:
        name = ex.alternate  # the argument, else a policy's (policies.alternate_of)
        return self.exchanges.get(name) if name is not None else None

    # --- store keys --------------------------------------------------------
    def binding_definition_keys(self, source: Exchange, dest: Queue | Exchange,
                                routing_key: str, arguments: dict[str, Any]) -> tuple[str, ...]:
        """The stored definitions a reply about this binding waits for: the binding and
        both ends; none when the binding is not durable."""
        if not (source.durable and _persists(dest)):
            return ()
        if isinstance(dest, Queue):
            kind, dest_key = "queue", self.queue_key(dest.name)
        else:
            kind, dest_key = "exchange", self.exchange_key(dest.name)
        return (self.binding_key(source.name, kind, dest.name, routing_key, arguments),
                self.exchange_key(source.name), dest_key)

    def exchange_key(self, name: str) -> str:
        return f"exchange\x00{self.name}\x00{name}"

    def queue_key(self, name: str) -> str:
        return f"queue\x00{self.name}\x00{name}"

    def binding_key(self, source: str, kind: str, dest: str, routing_key: str,
                     arguments: dict[str, Any]) -> str:
        return binding_store_key(self.name, source, kind, dest, routing_key, arguments)


def _persists(obj: Queue | Exchange) -> bool:
    """Whether obj's definition is stored (a durable exclusive queue's is not)."""
    return obj.persists if isinstance(obj, Queue) else obj.durable


def binding_store_key(vhost: str, source: str, kind: str, dest: str, routing_key: str,
                      arguments: dict[str, Any]) -> str:
    """The store key of one durable binding. Arguments are written as JSON of the
    typed, key-sorted form the exchanges compare bindings by (never repr(), whose
    output may change between Python versions and bring deleted bindings back)."""
    args = json.dumps(tables.to_json(freeze(arguments)), separators=(",", ":"),
                      ensure_ascii=False)
    return "\x00".join(("binding", vhost, source, kind, dest, routing_key, args))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return "none" if value is None else f"'{value}'"
