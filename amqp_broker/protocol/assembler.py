"""Content assembly: basic.publish, then its content header, then body frames -> one command.

A small pure state machine per channel (RabbitMQ's rabbit_command_assembler is the model):
anything out of order is 505 UNEXPECTED_FRAME, a body larger than its header said is 501,
and a message above the size limit is refused at the header (406), before its body is read.
Consecutive publishes usually repeat exchange, routing key and properties, so those bytes
objects are shared between the commands it hands out.
"""

from __future__ import annotations

from . import fast
from .errors import (
    FRAME_ERROR,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    AMQPError,
)

# exchange (short string with its length octet), routing key (idem), exchange, routing key,
# mandatory, raw content-header properties, body
Command = tuple[bytes, bytes, str, str, int, bytes, bytes]

_AWAIT_HEADER = -1


class ContentAssembler:
    __slots__ = ("_body", "_body_size", "_last_names", "_last_props", "_props", "_publish",
                 "_received", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        # (exchange raw, routing key raw, exchange, routing key, mandatory) of the publish
        # whose content is expected, or None
        self._publish: tuple[bytes, bytes, str, str, int] | None = None
        self._props = b""
        self._body_size = 0  # _AWAIT_HEADER until the header came
        self._received = 0
        self._body: list[bytes | memoryview] = []
        self._last_names = (b"", b"")
        self._last_props = b""

    @property
    def expecting_content(self) -> bool:
        return self._publish is not None

    def publish(self, payload: bytes) -> None:
        """A basic.publish method frame's payload: its content comes next."""
        if self._publish is not None:
            raise AMQPError(UNEXPECTED_FRAME, "expected content header for class 60, got "
                            "non content header frame instead", 60, 40)
        exchange, routing_key, bits = fast.decode_publish(payload)
        if bits & 2:
            raise AMQPError(NOT_IMPLEMENTED, "immediate=true", 60, 40)
        n = payload[6]
        ex_raw = payload[6: 7 + n]
        rk_raw = payload[7 + n: 8 + n + payload[7 + n]]
        last = self._last_names
        if ex_raw == last[0]:
            ex_raw = last[0]
        if rk_raw == last[1]:
            rk_raw = last[1]
        else:
            self._last_names = (ex_raw, rk_raw)
        self._publish = (ex_raw, rk_raw, exchange, routing_key, bits & 1)
        self._body_size = _AWAIT_HEADER

    def header(self, payload: bytes) -> Command | None:
        """A content header frame's payload; the command when the body is empty."""
        if self._publish is None or self._body_size != _AWAIT_HEADER:
            raise AMQPError(UNEXPECTED_FRAME, "unexpected content header frame")
        class_id, body_size, props = fast.decode_content_header(payload)
        if class_id != 60:
            raise AMQPError(FRAME_ERROR, f"content header class {class_id} is not basic")
        if body_size > self.max_size:
            self._publish = None
            raise AMQPError(PRECONDITION_FAILED, f"message size {body_size} is larger than "
                            f"configured max size {self.max_size}", 60, 40)
        if props == self._last_props:
            props = self._last_props
        else:
            fast.check_properties(props)
            self._last_props = props
        self._props = props
        self._body_size = body_size
        self._received = 0
        if body_size == 0:
            return self._complete(b"")
        self._body = []
        return None

    def body(self, payload: bytes | memoryview) -> Command | None:
        """A content body frame's payload; the command once the body is complete.

        A memoryview (FrameReader hands big body frames over as views of what it read)
        is copied here, once: into the joined body, or into bytes of its own."""
        size = self._body_size
        if size <= 0 or self._publish is None:
            raise AMQPError(UNEXPECTED_FRAME, "unexpected content body frame")
        received = self._received + len(payload)
        if received < size:
            self._received = received
            self._body.append(payload)
            return None
        if received > size:
            raise AMQPError(FRAME_ERROR, "content body exceeds the size in its header")
        if self._body:
            self._body.append(payload)
            body = b"".join(self._body)
            self._body = []
            return self._complete(body)
        return self._complete(payload if type(payload) is bytes else bytes(payload))

    def _complete(self, body: bytes) -> Command:
        publish = self._publish
        assert publish is not None
        self._publish = None
        self._body_size = 0
        return (*publish, self._props, body)
