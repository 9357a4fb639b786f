"""One typed error path for AMQP failures.

Raise an AMQPError anywhere in the broker; the connection translates it once
(`is_connection_error`) into either channel.close or connection.close.
The reply code alone decides which, as in RabbitMQ's rabbit_binary_generator.
"""

from __future__ import annotations

# Reply codes from the AMQP 0-9-1 specification.
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    REPLY_SUCCESS: "REPLY_SUCCESS",
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}

# Soft errors close only the channel; every other code closes the connection.
_CHANNEL_CODES = frozenset(
    {CONTENT_TOO_LARGE, NO_ROUTE, NO_CONSUMERS, ACCESS_REFUSED, NOT_FOUND,
     RESOURCE_LOCKED, PRECONDITION_FAILED}
)


class AMQPError(Exception):
    """An AMQP-level failure with its reply code, text and the offending method."""

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0):
        super().__init__(text)
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        """The reply text as RabbitMQ formats it: 'NAME - detail'."""
        text = f"{REPLY_NAMES.get(self.reply_code, 'ERROR')} - {self.text}"
        return text[:255]

    def with_method(self, class_id: int, method_id: int) -> AMQPError:
        if not self.class_id:
            self.class_id, self.method_id = class_id, method_id
        return self

    def __repr__(self) -> str:
        return f"AMQPError({self.reply_code}, {self.text!r}, {self.class_id}, {self.method_id})"


def is_connection_error(reply_code: int) -> bool:
    """The single place deciding whether an error closes the connection."""
    return reply_code not in _CHANNEL_CODES


class FrameError(AMQPError):
    """Raised by the frame parser for bytes that are not valid AMQP framing."""

    def __init__(self, text: str, reply_code: int = FRAME_ERROR):
        super().__init__(reply_code, text)
