"""The connection-level state machine, sans-IO: protocol header, start/start-ok,
tune/tune-ok, open/open-ok, and connection.close in either direction.

It is fed the bytes of the protocol header and the payloads of channel-0 method
frames, and answers with events (methods to send, what was negotiated, when
the socket should close). Checking a login and finding a vhost are callbacks
it is given, so it knows nothing of users, vhosts or sockets (h11's model).
Every transition is in `receive`; a method not allowed in a state is answered
as RabbitMQ does (rabbit_reader: 503 COMMAND_INVALID once open, 504
CHANNEL_ERROR before).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands

from .codec import Method, decode_method, make, name_of
from .errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    NOT_ALLOWED,
    SYNTAX_ERROR,
    AMQPError,
)
from .frames import FRAME_MIN_SIZE, PROTOCOL_HEADER


class State(enum.Enum):
    AWAIT_HEADER = "await-header"
    AWAIT_START_OK = "await-start-ok"
    AWAIT_TUNE_OK = "await-tune-ok"
    AWAIT_OPEN = "await-open"
    OPEN = "open"
    CLOSING = "closing"  # we sent connection.close and wait for close-ok
    CLOSED = "closed"  # the socket is to be closed once the output is flushed


@dataclass(frozen=True)
class Limits:
    """What connection.tune offers: the most the broker accepts."""

    channel_max: int
    frame_max: int
    heartbeat: int


# --- events -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    """A method to write on channel 0."""

    method: Method


@dataclass(frozen=True)
class ProtocolHeader:
    """The client sent another protocol's header (or version): write ours and close."""

    data: bytes = PROTOCOL_HEADER


@dataclass(frozen=True)
class LoggedIn:
    user: str
    client_properties: dict[str, Any]


@dataclass(frozen=True)
class Tuned:
    channel_max: int
    frame_max: int
    heartbeat: int


@dataclass(frozen=True)
class Opened:
    vhost: Any  # what the open_vhost callback returned


@dataclass(frozen=True)
class Closing:
    """The broker sent connection.close: give back what the connection holds."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """The connection is over: close the socket once the output is flushed.
    handshake_error: it ended in the handshake without a connection.close (logged once)."""

    reason: str
    handshake_error: bool = False


Event = Send | ProtocolHeader | LoggedIn | Tuned | Opened | Closing | Closed
# (mechanism, response) -> user name; raises AMQPError(ACCESS_REFUSED) for a refused
# login, ValueError for a response the mechanism cannot parse
Authenticate = Callable[[str, bytes], str]
# vhost name -> the vhost; raises AMQPError (NOT_ALLOWED) when it is not there or refused
OpenVhost = Callable[[str], Any]


@dataclass
class Handshake:
    server_properties: dict[str, Any]
    mechanisms: bytes
    limits: Limits
    authenticate: Authenticate
    open_vhost: OpenVhost
    state: State = State.AWAIT_HEADER
    client_properties: dict[str, Any] = field(default_factory=dict)
    _header: bytes = b""

    def capability(self, name: str) -> bool:
        caps = self.client_properties.get("capabilities")
        return isinstance(caps, dict) and bool(caps.get(name))

    # --- input ----------------------------------------------------------------------
    def receive_header(self, data: bytes) -> tuple[list[Event], bytes]:
        """Feed bytes while AWAIT_HEADER; returns the events and the bytes past the header."""
        need = 8 - len(self._header)
        self._header += data[:need]
        rest = data[need:]
        if len(self._header) < 8:
            if not PROTOCOL_HEADER.startswith(self._header[:4]):
                return self._bad_header(), b""
            return [], b""
        if self._header != PROTOCOL_HEADER:
            return self._bad_header(), b""
        self.state = State.AWAIT_START_OK
        start = make(commands.Connection.Start, version_major=0, version_minor=9,
                     server_properties=self.server_properties, mechanisms=self.mechanisms,
                     locales=b"en_US")
        return [Send(start)], rest

    def _bad_header(self) -> list[Event]:
        self.state = State.CLOSED
        return [ProtocolHeader(), Closed("bad protocol header")]

    def receive(self, payload: bytes) -> list[Event]:
        """A channel-0 method frame's payload -> events. Raises AMQPError for a
        connection error (the caller closes the connection with it: `close`)."""
        state = self.state
        if state is State.AWAIT_START_OK:
            try:
                key, method = decode_method(payload)
            except AMQPError as exc:
                # as RabbitMQ: an unusable start-ok is a handshake error, logged once and
                # answered by closing the socket
                self.state = State.CLOSED
                return [Closed(exc.text, handshake_error=True)]
        else:
            key, method = decode_method(payload)
        if state is State.CLOSING:
            if isinstance(method, commands.Connection.CloseOk):
                self.state = State.CLOSED
                return [Closed("closed by broker")]
            if isinstance(method, commands.Connection.Close):
                return [Send(make(commands.Connection.CloseOk))]
            return []  # anything else is dropped until close-ok
        if isinstance(method, commands.Connection.Close):
            self.state = State.CLOSED
            reason = f"client closed: {method.reply_code} {method.reply_text}".strip()
            return [Send(make(commands.Connection.CloseOk)), Closed(reason)]
        if isinstance(method, commands.Connection.CloseOk):
            raise AMQPError(CHANNEL_ERROR, "unexpected connection.close-ok", *key)
        if state is State.AWAIT_START_OK and isinstance(method, commands.Connection.StartOk):
            return self._start_ok(method)
        if state is State.AWAIT_TUNE_OK and isinstance(method, commands.Connection.TuneOk):
            return self._tune_ok(method)
        if state is State.AWAIT_OPEN and isinstance(method, commands.Connection.Open):
            vhost = self.open_vhost(method.virtual_host)
            self.state = State.OPEN
            return [Send(make(commands.Connection.OpenOk)), Opened(vhost)]
        if state is State.OPEN and isinstance(method, commands.Connection.UpdateSecret):
            return [Send(make(commands.Connection.UpdateSecretOk))]
        if state is State.OPEN and isinstance(method, (commands.Connection.Blocked,
                                                       commands.Connection.Unblocked)):
            return []
        raise AMQPError(COMMAND_INVALID if state is State.OPEN else CHANNEL_ERROR,
                        f"unexpected method {name_of(key)} in state {state.value}", *key)

    def _start_ok(self, method: commands.Connection.StartOk) -> list[Event]:
        props = method.client_properties
        self.client_properties = props if isinstance(props, dict) else {}
        try:
            # decode_method gives the response as bytes (pamqp's annotation says str)
            response: Any = method.response
            user = self.authenticate(method.mechanism, bytes(response))
        except ValueError as exc:
            self.state = State.CLOSED
            return [Closed(str(exc), handshake_error=True)]
        self.state = State.AWAIT_TUNE_OK
        limits = self.limits
        tune = make(commands.Connection.Tune, channel_max=limits.channel_max,
                    frame_max=limits.frame_max, heartbeat=limits.heartbeat)
        return [LoggedIn(user, self.client_properties), Send(tune)]

    def _tune_ok(self, method: commands.Connection.TuneOk) -> list[Event]:
        limits = self.limits
        channel_max = method.channel_max or 65535
        frame_max = method.frame_max or limits.frame_max
        if frame_max < FRAME_MIN_SIZE:
            raise AMQPError(SYNTAX_ERROR, f"frame_max={frame_max} < {FRAME_MIN_SIZE} min size",
                            10, 31)
        if frame_max > limits.frame_max:
            raise AMQPError(SYNTAX_ERROR, f"frame_max={frame_max} > {limits.frame_max} "
                            "max size", 10, 31)
        if limits.channel_max and channel_max > limits.channel_max:
            raise AMQPError(NOT_ALLOWED, f"channel_max={channel_max} > "
                            f"{limits.channel_max} max", 10, 31)
        self.state = State.AWAIT_OPEN
        return [Tuned(channel_max, frame_max, method.heartbeat)]

    # --- the broker closes ------------------------------------------------------------
    def close(self, exc: AMQPError) -> list[Event]:
        """Close the connection with an error (or CONNECTION_FORCED at shutdown)."""
        state = self.state
        if state is State.CLOSING or state is State.CLOSED:
            return []
        if state is State.AWAIT_HEADER or (
                exc.reply_code == ACCESS_REFUSED and state is State.AWAIT_START_OK
                and not self.capability("authentication_failure_close")):
            # before the header, or a refused login of a client that cannot be told:
            # the socket is just closed
            self.state = State.CLOSED
            return [Closed(exc.reply_text if state is State.AWAIT_HEADER
                           else "authentication failed")]
        self.state = State.CLOSING
        close = make(commands.Connection.Close, reply_code=exc.reply_code,
                     reply_text=exc.reply_text, class_id=exc.class_id, method_id=exc.method_id)
        return [Send(close), Closing(exc.reply_text)]

    def lost(self) -> None:
        """The socket is gone."""
        self.state = State.CLOSED
