"""Optional queue arguments (x-max-length, x-message-ttl, x-dead-letter-exchange, ...):
parsed and validated once at declare, as RabbitMQ does (406 on a bad value)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import PRECONDITION_FAILED, AMQPError

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

    @property
    def limited(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, (str, bytes)):
        return "longstr"
    if isinstance(value, float):
        return "double"
    return type(value).__name__


def parse(arguments: dict[str, Any], queue: str, vhost: str) -> QueueArgs:
    def fail(name: str, reason: str) -> AMQPError:
        return AMQPError(PRECONDITION_FAILED,
                         f"invalid arg '{name}' for queue '{queue}' in vhost '{vhost}': {reason}")

    def integer(name: str, minimum: int) -> int | None:
        if name not in arguments:
            return None
        value = arguments[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(name, f"{{unacceptable_type,{_type_name(value)}}}")
        if value < minimum:
            kind = "value_negative" if value < 0 else "value_zero"
            raise fail(name, f"{{{kind},{value}}}")
        return value

    def string(name: str) -> str | None:
        if name not in arguments:
            return None
        value = arguments[name]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        if not isinstance(value, str):
            raise fail(name, f"{{unacceptable_type,{_type_name(value)}}}")
        return value

    def flag(name: str) -> bool:
        value = arguments.get(name, False)
        if not isinstance(value, bool):
            raise fail(name, f"{{unacceptable_type,{_type_name(value)}}}")
        return value

    overflow = string("x-overflow") or "drop-head"
    if overflow not in OVERFLOW_MODES:
        raise fail("x-overflow", f"{{invalid_value,<<\"{overflow}\">>}}")
    max_priority = integer("x-max-priority", 0)
    if max_priority is not None and max_priority > 255:
        raise fail("x-max-priority", f"{{value_too_large,{max_priority},255}}")
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
    )
