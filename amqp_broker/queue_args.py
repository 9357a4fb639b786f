"""Optional queue arguments (x-max-length, x-message-ttl, x-dead-letter-exchange, ...):
parsed and validated once at declare, as RabbitMQ does (406 on a bad value).

x-queue-type classic and quorum are accepted (a quorum queue is a durable queue here);
RabbitMQ's arguments are checked against the type as it does, and those it would accept
but this broker does not implement are refused (406), never silently accepted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .protocol.errors import PRECONDITION_FAILED, AMQPError

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")


@dataclass(frozen=True, slots=True)
class QueueArgs:
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    message_ttl: int | None = None  # milliseconds
    expires: int | None = None  # milliseconds unused before the queue is deleted
    max_priority: int | None = None
    single_active_consumer: bool = False
    queue_type: str = "classic"  # classic or quorum (a quorum queue is a durable one here)
    # x-delivery-limit: returns (requeues) a message may have before it is dead-lettered
    # (reason delivery_limit) or dropped; quorum in RabbitMQ, classic too here (LavinMQ)
    delivery_limit: int | None = None
    # x-consumer-timeout (RabbitMQ 3.12+) or the consumer-timeout policy key, in
    # milliseconds: overrides the broker-wide consumer_timeout for this queue's deliveries
    consumer_timeout: int | None = None
    # x-max-age of a stream (or the max-age policy key), as given: "7D", "12h", ...
    max_age: str | None = None

    @property
    def limited(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None


# RabbitMQ 3.10's queue types and the x- arguments each accepts (capabilities() of
# rabbit_classic_queue, rabbit_quorum_queue and rabbit_stream_queue), in its order;
# and RabbitMQ 3.12's x-consumer-timeout (a non-negative integer, as RabbitMQ 4 checks it).
TYPE_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "classic": ("x-expires", "x-message-ttl", "x-dead-letter-exchange",
                "x-dead-letter-routing-key", "x-max-length", "x-max-length-bytes",
                "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version",
                "x-single-active-consumer", "x-queue-type", "x-queue-master-locator",
                "x-delivery-limit",  # not in RabbitMQ: classic queues take it here, as LavinMQ's
                "x-consumer-timeout"),
    "quorum": ("x-dead-letter-exchange", "x-dead-letter-routing-key", "x-dead-letter-strategy",
               "x-expires", "x-max-length", "x-max-length-bytes", "x-max-in-memory-length",
               "x-max-in-memory-bytes", "x-overflow", "x-single-active-consumer",
               "x-queue-type", "x-quorum-initial-group-size", "x-delivery-limit",
               "x-message-ttl", "x-queue-leader-locator", "x-consumer-timeout"),
    "stream": ("x-max-length-bytes", "x-queue-type", "x-max-age",
               "x-stream-max-segment-size-bytes", "x-initial-cluster-size",
               "x-queue-leader-locator"),
}
TYPE_MODULES = {"classic": "rabbit_classic_queue", "quorum": "rabbit_quorum_queue",
                "stream": "rabbit_stream_queue"}
# RabbitMQ's own arguments, whatever the queue type; anything else (x-foo, ...) it
# ignores, and so do we
KNOWN_ARGUMENTS = frozenset(a for args in TYPE_ARGUMENTS.values() for a in args)
# Accepted by RabbitMQ for the type but not implemented here, and not harmless to
# ignore: refused (406) rather than silently accepted. x-queue-mode, x-queue-version,
# x-queue-master-locator, x-quorum-initial-group-size, x-queue-leader-locator and
# x-max-in-memory-* only tune a RabbitMQ cluster's memory or placement: accepted.
NOT_IMPLEMENTED: tuple[str, ...] = ()
_LEADER_LOCATORS = ("client-local", "balanced", "random", "least-leaders")
_MAX_EXPIRY = 315_360_000_000  # ten years in ms (rabbit_misc:check_expiry)


def _type_name(value: Any) -> str:
    """The AMQP field type RabbitMQ names in its errors (as pika encodes the value)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(1 << 31) <= value < (1 << 31) else "long"
    if isinstance(value, (str, bytes)):
        return "longstr"
    if isinstance(value, bytearray):
        return "binary"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "void"
    return type(value).__name__


def _text(value: Any) -> str | None:
    """A longstr argument as str; None for any other type."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return None


def queue_type(arguments: dict[str, Any]) -> str:
    """The queue type asked for: classic unless x-queue-type names another known one."""
    name = _text(arguments.get("x-queue-type"))
    return name if name in TYPE_ARGUMENTS else "classic"


def _fail(queue: str, vhost: str, name: str, reason: str) -> AMQPError:
    return AMQPError(PRECONDITION_FAILED,
                     f"invalid arg '{name}' for queue '{queue}' in vhost '{vhost}': {reason}")


def _quoted(text: str) -> str:
    """An Erlang string printed with ~p, as RabbitMQ formats its string errors."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_value(name: str, value: Any, arguments: dict[str, Any]) -> str | None:
    """RabbitMQ's validator for one argument (rabbit_amqqueue:declare_args()): the
    error term as it prints it, or None when the value is acceptable."""
    def integer(minimum: int | None = 0) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return _quoted(f"expected integer, got {_type_name(value)}")
        if minimum is not None and value < 0:
            return f"{{value_negative,{value}}}"
        return None

    def one_of(choices: tuple[str, ...], error: str) -> str | None:
        text = _text(value)
        if text is None:
            return f"{{unacceptable_type,{_type_name(value)}}}"
        return None if text in choices else error.format(text)

    if name in ("x-expires", "x-message-ttl"):
        error = integer(None)
        if error:
            return error
        if name == "x-expires" and value == 0:
            return "{value_zero,0}"
        if value < 0:
            return f"{{value_negative,{value}}}"
        if value > _MAX_EXPIRY:
            return f"{{value_too_large,{value}}}"
        return None
    if name == "x-dead-letter-exchange":
        return None if _text(value) is not None else \
            f"{{unacceptable_type,{_type_name(value)}}}"
    if name == "x-dead-letter-routing-key":
        if _text(value) is None:
            return f"{{unacceptable_type,{_type_name(value)}}}"
        return None if "x-dead-letter-exchange" in arguments else \
            "routing_key_but_no_dlx_defined"
    if name == "x-dead-letter-strategy":
        return one_of(("at-most-once", "at-least-once"), "invalid_dlx_strategy")
    if name in ("x-max-length", "x-max-length-bytes", "x-max-in-memory-length",
                "x-max-in-memory-bytes", "x-stream-max-segment-size-bytes", "x-delivery-limit",
                "x-consumer-timeout"):
        return integer()
    if name == "x-max-priority":
        error = integer()
        if error is None and value > 255:
            return f"{{max_value_exceeded,{value}}}"
        return error
    if name == "x-overflow":
        return one_of(OVERFLOW_MODES, "invalid_overflow")
    if name == "x-queue-mode":
        return one_of(("default", "lazy"), _quoted("unsupported queue mode '{}'"))
    if name == "x-queue-version":
        error = integer()
        if error is None and value not in (1, 2):
            return _quoted(f"unsupported queue version '{value}'")
        return error
    if name == "x-single-active-consumer":
        return None if isinstance(value, bool) else \
            f"{{unacceptable_type,{_type_name(value)}}}"
    if name == "x-queue-type":
        return one_of(tuple(TYPE_ARGUMENTS), _quoted("unsupported queue type '{}'"))
    if name in ("x-quorum-initial-group-size", "x-initial-cluster-size"):
        error = integer()
        if error is None and value == 0:
            return "{value_zero,0}"
        return error
    if name == "x-max-age":
        text = _text(value)
        if text is None:
            return f"{{unacceptable_type,{_type_name(value)}}}"
        match = re.fullmatch(r"([0-9]+)([YMDhms])", text)
        return None if match and int(match.group(1)) > 0 else "invalid_max_age"
    if name == "x-queue-leader-locator":
        return one_of(_LEADER_LOCATORS, "invalid_queue_locator_arg")
    return None


def check_declare(arguments: dict[str, Any], queue: str, vhost: str, durable: bool,
                  exclusive: bool, auto_delete: bool) -> None:
    """What RabbitMQ checks when a queue is created (rabbit_amqqueue:check_declare_arguments
    and the queue type's declare), in its order and words; then 406 for what it would
    accept but this broker does not implement. durable is as RabbitMQ sees it (an
    exclusive queue is never durable)."""
    dlx = arguments.get("x-dead-letter-exchange")
    if dlx is not None and _text(dlx) is None:  # rabbit_channel checks this one first
        raise AMQPError(PRECONDITION_FAILED,
                        f"invalid type '{_type_name(dlx)}' for arg 'x-dead-letter-exchange' "
                        f"in queue '{queue}' in vhost '{vhost}'")
    error = ("x-queue-type" in arguments
             and _check_value("x-queue-type", arguments["x-queue-type"], arguments))
    if error:
        raise _fail(queue, vhost, "x-queue-type", error)
    kind = queue_type(arguments)
    allowed = TYPE_ARGUMENTS[kind]
    for name in _DECLARE_ORDER:
        if name in allowed and name in arguments:
            error = _check_value(name, arguments[name], arguments)
            if error:
                raise _fail(queue, vhost, name, error)
    for name in arguments:
        if name in KNOWN_ARGUMENTS and name not in allowed:
            raise AMQPError(PRECONDITION_FAILED,
                            f"invalid arg '{name}' for queue '{queue}' in vhost '{vhost}' "
                            f"of queue type {TYPE_MODULES[kind]}")
    if kind != "classic":
        for refused, prop in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner"),
                              (not durable, "non-durable")):
            if refused:
                raise AMQPError(PRECONDITION_FAILED, f"invalid property '{prop}' for queue "
                                                     f"'{queue}' in vhost '{vhost}'")
    for name in NOT_IMPLEMENTED:
        if name in arguments:
            raise _fail(queue, vhost, name, "not implemented by this broker")
    if _text(arguments.get("x-dead-letter-strategy")) == "at-least-once":
        raise _fail(queue, vhost, "x-dead-letter-strategy",
                    "at-least-once dead-lettering is not implemented by this broker")


def check_server_named(arguments: dict[str, Any]) -> None:
    """RabbitMQ refuses a server-named (empty name) queue of type quorum or stream."""
    kind = queue_type(arguments)
    if kind != "classic":
        raise AMQPError(PRECONDITION_FAILED, "Cannot declare a server-named queue for type "
                                             f"{TYPE_MODULES[kind]}")


# rabbit_amqqueue:declare_args(): the order RabbitMQ validates arguments in
_DECLARE_ORDER = (
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-dead-letter-strategy", "x-max-length", "x-max-length-bytes", "x-max-in-memory-length",
    "x-max-in-memory-bytes", "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version",
    "x-single-active-consumer", "x-queue-type", "x-quorum-initial-group-size", "x-max-age",
    "x-stream-max-segment-size-bytes", "x-initial-cluster-size", "x-queue-leader-locator",
    # RabbitMQ checks no value of x-delivery-limit (-1 or "abc" are accepted); here it is
    # a non-negative integer like x-max-length
    "x-delivery-limit", "x-consumer-timeout")


def _shown(value: Any, typed: bool) -> str:
    """rabbit_misc's val/1: 'V', or 'the value 'V' of type 'T'' when the other side is none."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = str(value)
    return f"the value '{text}' of type '{_type_name(value)}'" if typed else f"'{text}'"


def inequivalent(current: dict[str, Any],
                 received: dict[str, Any]) -> tuple[str, str, str] | None:
    """The first argument of the existing queue's type that a redeclare changes, as
    (name, received, current) in RabbitMQ's words; None when equivalent. Arguments the
    type does not take (and unknown ones) are not compared, as in RabbitMQ."""
    for name in TYPE_ARGUMENTS[queue_type(current)]:
        old, new = current.get(name), received.get(name)
        if old is None and new is None:
            continue
        if old is not None and new is not None:
            if isinstance(old, bool) == isinstance(new, bool) and old == new:
                continue
            return name, _shown(new, False), _shown(old, False)
        if name == "x-queue-type" and _text(old if new is None else new) == "classic":
            continue  # a classic queue need not say so
        return name, _shown(new, True), _shown(old, True)
    return None


def parse(arguments: dict[str, Any], queue: str, vhost: str) -> QueueArgs:
    def fail(name: str, reason: str) -> AMQPError:
        return _fail(queue, vhost, name, reason)

    def integer(name: str, minimum: int) -> int | None:
        if name not in arguments:
            return None
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(name, _quoted(f"expected integer, got {_type_name(value)}"))
        if value < minimum:
            kind = "value_negative" if value < 0 else "value_zero"
            raise fail(name, f"{{{kind},{value}}}")
        return value

    def string(name: str) -> str | None:
        if name not in arguments:
            return None
        value = _text(arguments[name])
        if value is None:
            raise fail(name, f"{{unacceptable_type,{_type_name(arguments[name])}}}")
        return value

    def flag(name: str) -> bool:
        value = arguments.get(name, False)
        if not isinstance(value, bool):
            raise fail(name, f"{{unacceptable_type,{_type_name(value)}}}")
        return value

    overflow = string("x-overflow") or "drop-head"
    if overflow not in OVERFLOW_MODES:
        raise fail("x-overflow", "invalid_overflow")
    max_priority = integer("x-max-priority", 0)
    if max_priority is not None and max_priority > 255:
        raise fail("x-max-priority", f"{{max_value_exceeded,{max_priority}}}")
    return QueueArgs(
        max_length=integer("x-max-length", 0),
        max_length_bytes=integer("x-max-length-bytes", 0),
        overflow=overflow,
        dead_letter_exchange=string("x-dead-letter-exchange"),
        dead_letter_routing_key=string("x-dead-letter-routing-key"),
        message_ttl=integer("x-message-ttl", 0),
        expires=integer("x-expires", 1),
        max_priority=max_priority,
        single_active_consumer=flag("x-single-active-consumer"),
        queue_type=queue_type(arguments),
        delivery_limit=integer("x-delivery-limit", 0),
        consumer_timeout=integer("x-consumer-timeout", 0),
        max_age=string("x-max-age"),
    )
