"""One client connection, sans-IO: bytes in through `receive`, bytes out
through `take_output`. The I/O shell (server.py) owns the socket and timers.

The protocol rules are in amqp_broker.protocol: the handshake and close
(protocol.handshake, whose events this class acts on), the channel lifecycle
(protocol.channels), content assembly and the codecs. This class ties them to
the broker: it dispatches methods to the handlers, buffers output, and holds
input while a reply waits for the disk or an alarm blocks publishers. Every
AMQPError raised while handling a frame is translated here, once: channel
errors close the channel, connection errors close the connection
(errors.is_connection_error).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands

from . import permissions
from .channel import ACK, Channel
from .exchanges.topic import Finished, TopicRouting
from .handlers import HANDLERS
from .identity import client_name, peer_name, server_properties
from .protocol import channels, fast, handshake, sasl
from .protocol.channels import Action, ChannelState
from .protocol.codec import Method, decode_method, encode_method, make, name_of
from .protocol.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    AMQPError,
    is_connection_error,
)
from .protocol.fast import BIG_BODY as BIG_PART
from .protocol.frames import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    HEARTBEAT_FRAME,
    FrameReader,
    content_frames,
    method_frame,
)
from .syncgate import Release, SyncGate

if TYPE_CHECKING:
    from .broker import Broker
    from .queue import Queue
    from .tls import TLSSession
    from .vhost import VHost

_method_key = struct.Struct(">HH").unpack_from
# a refused login is answered this many seconds later (the shell holds the output), so
# guessing passwords costs the guesser time; the reply never says what was wrong
AUTH_FAILURE_DELAY = 1.0

ConnState = handshake.State


class Connection:
    # slots: read for every frame; more than 30 plain attributes would cost CPython its
    # fast attribute layout. __dict__ stays for tests that replace a method.
    __slots__ = (
        "_held_input", "_out", "_out_big", "_wake_pending", "access", "alarm_blocked",
        "auth_mechanism", "broker", "channel_max", "channels", "client_properties",
        "close_reason", "config", "confirms_due", "connected_at", "exclusive_queues",
        "finished_routes", "frame_max",
        "gate", "handshake", "heartbeat", "hold_output_until", "in_flight", "last_queue_name",
        "last_received", "local", "mechanisms", "on_output", "on_resume", "out_size", "paused",
        "peer", "peer_cert_login", "peer_cert_refusal", "peer_host", "peer_label", "published",
        "reader", "recv_oct", "routing", "send_oct", "state", "throttled", "tls_session",
        "user", "vhost", "write_blocked", "__dict__"
    )

    def __init__(self, broker: Broker, peer: tuple[str, int] | None = None,
                 on_output: Callable[[], None] | None = None) -> None:
        self.broker = broker
        self.config = broker.config
        self.peer = peer
        self.peer_host = peer[0] if peer else ""
        self.peer_label = peer_name(peer)  # "host:port" in every log line
        self.on_output = on_output or _noop
        self.reader = FrameReader(FRAME_MIN_SIZE)
        config = self.config
        # TLS facts (use_tls): the EXTERNAL login name from the client certificate
        self.tls_session: TLSSession | None = None
        self.peer_cert_login: str | None = None
        self.peer_cert_refusal = "not a TLS-enabled connection"
        self.mechanisms = sasl.offered(config.auth_mechanisms, tls=False)
        self.handshake = handshake.Handshake(
            server_properties=server_properties(broker.cluster_name),
            mechanisms=" ".join(self.mechanisms).encode(),
            limits=handshake.Limits(config.channel_max, config.frame_max, config.heartbeat),
            authenticate=self._authenticate, open_vhost=self._open_vhost)
        # the handshake's state, copied after each of its transitions (_handle, _finish):
        # read for every frame, so a plain attribute rather than a property
        self.state = self.handshake.state
        # output: small frames pile up in _out (joined when the shell takes them); once a
        # big body is queued, what came before it is joined into _out_big and the body
        # follows as it is (a view of it at most), so the shell writes it with writev
        self._out: list[bytes | memoryview] = []
        self._out_big: list[bytes | memoryview] = []
        self.out_size = 0  # queued for the shell, not yet taken
        self.in_flight = 0  # taken by the shell, being sent (until drained)
        self._wake_pending = False
        self.write_blocked = False
        # more than max_connection_buffer is queued or being sent: input is held until
        # it drains (TCP backpressure on a client that does not read)
        self.throttled = False
        # published during a resource alarm: told connection.blocked (if it has the
        # capability) and input held until every alarm clears
        self.alarm_blocked = False
        # negotiated
        self.channel_max = self.config.channel_max
        self.frame_max = FRAME_MIN_SIZE
        self.heartbeat = 0
        self.user = ""
        self.hold_output_until = 0.0  # monotonic time before which the shell writes nothing
        self.access = broker.user_context("")  # the logged-in user's permission checks
        self.vhost: VHost = None  # type: ignore[assignment]
        self.client_properties: dict[str, Any] = {}
        self.channels: dict[int, Channel] = {}
        self.exclusive_queues: set[Queue] = set()
        self.last_queue_name: str | None = None
        self.confirms_due: set[Channel] = set()
        self.close_reason = ""
        self.last_received = time.monotonic()
        self.published = 0  # messages this connection published
        # for the management API: local (host, port) (set by the shell), when it was
        # opened (ms since the epoch), the login mechanism, octets in and out per batch
        self.local: tuple[str, int] | None = None
        self.connected_at = int(time.time() * 1000)
        self.auth_mechanism = ""
        self.recv_oct = self.send_oct = 0
        # input held: a durable reply waits for the disk, the store is backlogged, the
        # output is over its cap (throttled) or an alarm blocks it (alarm_blocked)
        self.paused = False
        self._held_input = 0  # replies in the gate that hold input
        self.on_resume: Callable[[], None] = _noop
        self.gate = SyncGate(broker.store, self._gate_released)
        # a publish whose topic match runs in slices (route_later), holding input
        self.routing: (tuple[TopicRouting, Channel, Callable[[], object], tuple[int, int]]
                       | None) = None
        self.finished_routes: Finished = {}  # its matches done so far

    @property
    def tls(self) -> bool:
        return self.tls_session is not None

    def use_tls(self, session: TLSSession) -> None:
        """The connection came over TLS (set by the shell before any bytes): EXTERNAL
        is offered if configured, with the client certificate's name as the login."""
        self.tls_session = session
        self.peer_cert_login = session.login
        self.peer_cert_refusal = session.refusal or ""
        self.mechanisms = sasl.offered(self.config.auth_mechanisms, tls=True)
        self.handshake.mechanisms = " ".join(self.mechanisms).encode()

    # --- output --------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._out.append(data)
        self.out_size += len(data)
        if self.out_size > self.config.write_high_water:
            self._over_high_water()
        if not self._wake_pending:
            self._wake_pending = True
            self.on_output()

    def _over_high_water(self) -> None:
        """Deliveries wait for the output to drain; input too, past the buffer's cap."""
        self.write_blocked = True
        if (not self.throttled and self.state is ConnState.OPEN and self.out_size
                + self.in_flight > self.config.max_connection_buffer):
            self.throttled = self.paused = True

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """Frames with a big body in them: parts of BIG_PART bytes or more are queued as
        they are (the shell hands them to the kernel without copying them), the small
        ones between them are joined."""
        out = self._out
        big = self._out_big
        size = 0
        for part in parts:
            n = len(part)
            size += n
            if n < BIG_PART:
                out.append(part)
            else:
                if out:
                    big.append(out[0] if len(out) == 1 else b"".join(out))
                    out.clear()
                big.append(part)
        self.out_size += size
        if self.out_size > self.config.write_high_water:
            self._over_high_water()
        if not self._wake_pending:
            self._wake_pending = True
            self.on_output()

    def write_content(self, channel: int, props: bytes, body: bytes) -> None:
        for part in content_frames(channel, props, body, self.frame_max):
            self.write(part)

    def send_method(self, channel: int, method: type[Method], **values: Any) -> None:
        self.write(method_frame(channel, encode_method(make(method, **values))))

    def reply_after(self, token: int, release: Release, arg: Any) -> None:
        """Run release(arg, ok) once the store synced through token (at once when it
        has and nothing is held before it), holding further input meanwhile so
        nothing this client sends later is answered first."""
        gate = self.gate
        if gate.ready(token):
            release(arg, True)
            return
        self._held_input += 1
        self.paused = True
        gate.hold(token, self._release_held, (release, arg))

    def _release_held(self, entry: tuple[Release, Any], ok: bool) -> None:
        self._held_input -= 1
        if self.state is not ConnState.CLOSED:
            entry[0](entry[1], ok)

    def _gate_released(self) -> None:
        """After the gate let replies out: send confirms, resume held input."""
        if self.state is ConnState.CLOSED:
            return
        self._flush_confirms_due()
        self.flush()
        self._maybe_resume()

    def _flush_confirms_due(self) -> None:
        """Confirms that became ready go out, one multiple=true basic.ack per channel."""
        if self.confirms_due:
            for ch in self.confirms_due:
                ch.flush_confirms()
            self.confirms_due.clear()

    def _maybe_resume(self) -> None:
        """Read input again once nothing holds it any more."""
        if (self.paused and not self._held_input and not self.throttled
                and not self.alarm_blocked and self.state is not ConnState.CLOSED):
            self.paused = False
            self.receive(b"")  # frames that arrived meanwhile
            self.on_resume()

    def _wait_for_store(self) -> None:
        """The store holds too many unsynced bodies: read this publisher's input again
        only once what it sent so far is on disk (those bodies then leave RAM)."""
        self.reply_after(self.broker.store.last_token, _ignore_release, None)

    # --- resource alarms -----------------------------------------------------
    def _publish_during_alarm(self) -> None:
        """basic.publish during a resource alarm: as RabbitMQ, connection.blocked once
        (to a client with the capability) and no more input until the alarm clears."""
        if not self.alarm_blocked:
            self.alarm_blocked = True
            if self.capability("connection.blocked"):
                self.send_method(0, commands.Connection.Blocked, reason=self.broker.alarm_reason())
        self.paused = True

    def alarm_cleared(self) -> None:
        """Every resource alarm cleared: unblock this connection if it was blocked."""
        if not self.alarm_blocked:
            return
        self.alarm_blocked = False
        if self.state is ConnState.OPEN and self.capability("connection.blocked"):
            self.send_method(0, commands.Connection.Unblocked)
        self._maybe_resume()

    @property
    def input_stalled(self) -> bool:
        """Input is held for as long as the peer or an alarm decides: its heartbeats
        are not read meanwhile, so they must not be missed."""
        return self.throttled or self.alarm_blocked

    def buffered_bytes(self) -> int:
        """Bytes this connection holds in its buffers."""
        return self.out_size + self.in_flight + len(self.reader)

    def held_bytes(self) -> int:
        """Bytes held for this client, buffers and unacked deliveries (memory alarm)."""
        held = self.buffered_bytes()
        for ch in self.channels.values():
            if ch.unacked:
                held += ch.unacked_bytes_estimate()
        return held

    def check_consumer_timeouts(self, now: float, timeout: float) -> None:
        """Close each channel whose oldest unacked delivery is older than timeout
        (seconds; 0: none), or than the consumer timeout of that delivery's queue
        (x-consumer-timeout, the consumer-timeout policy key: RabbitMQ 3.12's
        rabbit_channel looks at the oldest one only too), with RabbitMQ's 406 text."""
        for ch in list(self.channels.values()):
            since = ch.oldest_unacked_since(now)
            if since is None:
                continue
            limit = timeout or None
            own = next(iter(ch.unacked.values()))[1].args.consumer_timeout
            if own is not None:
                limit = own / 1000
            if limit is not None and now - since > limit:
                millis = int(limit * 1000)
                self.broker.log.warning("consumer timeout", peer=self.peer_label,
                                        channel=ch.number, timeout_ms=millis)
                self.close_channel(ch, AMQPError(
                    PRECONDITION_FAILED,
                    f"delivery acknowledgement on channel {ch.number} timed out. Timeout "
                    f"value used: {millis} ms. This timeout value can be configured, see "
                    "consumers doc guide to learn more"))

    def take_output(self) -> bytes:
        """Everything queued for the socket, as one buffer."""
        parts = self.take_parts()
        if not parts:
            return b""
        first = parts[0]
        return first if len(parts) == 1 and isinstance(first, bytes) else b"".join(parts)

    def take_parts(self) -> list[bytes | memoryview]:
        """Everything queued for the socket, as buffers to write in order (a vectored
        write): big bodies as they were queued, the small frames between them joined.
        Counted as in flight until drained()."""
        self._wake_pending = False
        out = self._out
        big = self._out_big
        if big:
            if out:
                big.append(out[0] if len(out) == 1 else b"".join(out))
                self._out = []
            parts = big
            self._out_big = []
        elif out:
            parts = [out[0] if len(out) == 1 else b"".join(out)]
            self._out = []
        else:
            return []
        size = self.out_size
        self.send_oct += size
        self.out_size = 0
        self.in_flight = size
        return parts

    def drained(self) -> None:
        """The shell wrote everything out: resume deliveries paused on a full buffer,
        and input held while the output was over its cap."""
        self.in_flight = 0
        if self.write_blocked and self.out_size <= self.config.write_high_water // 2:
            self.write_blocked = False
            for ch in list(self.channels.values()):
                ch.kick()
        if self.throttled and self.out_size <= self.config.max_connection_buffer // 2:
            self.throttled = False
            self._maybe_resume()

    def flush(self) -> None:
        if (self._out or self._out_big) and not self._wake_pending:
            self._wake_pending = True
            self.on_output()

    def capability(self, name: str) -> bool:
        return self.handshake.capability(name)

    @property
    def closed(self) -> bool:
        return self.state is ConnState.CLOSED

    # --- input ---------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Process bytes from the socket; never raises."""
        if self.closed:  # (the property: the frame loop below may close it)
            return
        self.last_received = time.monotonic()
        self.recv_oct += len(data)
        published = self.published
        try:
            if self.state is ConnState.AWAIT_HEADER:
                events, data = self.handshake.receive_header(data)
                self._handle(events)
                if not data:
                    return
            if self.paused:
                self.reader.hold(data)
                return
            for frame_type, channel, payload in self.reader.feed(data):
                self._frame(frame_type, channel, payload)
                if self.paused or self.state is ConnState.CLOSED:
                    break
        except AMQPError as exc:
            if exc.reply_code == FRAME_ERROR:
                # the rest of the buffer cannot be trusted; start afresh so the
                # client's close-ok is understood
                self.reader = FrameReader(self.frame_max)
            self.close_with(exc)
        except Exception as exc:  # a bug must cost one connection, not the broker
            self.broker.log.exception("internal error handling frame", peer=self.peer_label)
            self.close_with(AMQPError(INTERNAL_ERROR, f"internal error ({exc.__class__.__name__})"))
        self._flush_confirms_due()
        if self.broker.store_backlogged and self.published != published:
            self._wait_for_store()

    def _frame(self, frame_type: int, channel: int, payload: bytes) -> None:
        if frame_type == FRAME_METHOD:
            if channel == 0:
                self._connection_method(payload)
                return
            if self.state is not ConnState.OPEN:
                if self.state is ConnState.CLOSING:
                    return
                raise AMQPError(COMMAND_INVALID, "channel methods before connection.open")
            ch = self.channels.get(channel)
            if len(payload) < 4:
                raise AMQPError(FRAME_ERROR, "method frame too short")
            key = _method_key(payload, 0)
            if ch is None or ch.state is not ChannelState.OPEN:
                self._channel_lifecycle(channel, ch, key)
                return
            try:
                if key == (60, 40):
                    ch.on_publish(payload)
                    if self.broker.alarms:
                        self._publish_during_alarm()
                    return
                if ch.expecting_content():
                    raise AMQPError(UNEXPECTED_FRAME, "expected content header for class 60, "
                                    "got non content header frame instead", *key)
                if key == (60, 80):
                    tag, bits = fast.decode_ack(payload)
                    ch.settle(tag, bool(bits & 1), ACK)
                    return
                if key[0] == 20:
                    self._channel_method(ch, key, payload)
                    return
                handler = HANDLERS.get(key)
                if handler is None:
                    raise channels.unexpected(key)
                handler(ch, decode_method(payload)[1])
            except AMQPError as exc:
                exc.with_method(*key)
                if is_connection_error(exc.reply_code):
                    raise
                self._close_channel(ch, exc)
        elif frame_type == FRAME_HEADER or frame_type == FRAME_BODY:
            if self.state is not ConnState.OPEN:
                if self.state is ConnState.CLOSING:
                    return
                raise AMQPError(UNEXPECTED_FRAME, "content frame before connection.open")
            if frame_type == FRAME_HEADER and len(payload) < 14:
                raise AMQPError(FRAME_ERROR, "content header frame too short")
            ch = self.channels.get(channel)
            if ch is None:
                raise AMQPError(CHANNEL_ERROR, f"content frame on unopened channel {channel}")
            if ch.state is not ChannelState.OPEN:
                return  # content of a method sent before the client saw channel.close
            try:
                if frame_type == FRAME_HEADER:
                    ch.on_header(payload)
                else:
                    ch.on_body(payload)
            except AMQPError as exc:
                if is_connection_error(exc.reply_code):
                    raise
                self._close_channel(ch, exc)
        elif frame_type == FRAME_HEARTBEAT:
            if channel != 0:
                raise AMQPError(FRAME_ERROR, "heartbeat frame on a non-zero channel")

    # --- channels ------------------------------------------------------------
    def _channel_lifecycle(self, number: int, ch: Channel | None, key: tuple[int, int]) -> None:
        """A method on a channel not open (a new number, or one we are closing)."""
        action = channels.on_method(None if ch is None else ch.state, key, len(self.channels),
                                    self.channel_max)
        if action is Action.OPEN:
            self.channels[number] = Channel(self, number)
            self.send_method(number, commands.Channel.OpenOk)
        elif action is Action.FORGET:
            del self.channels[number]
        elif action is Action.ANSWER_CLOSE:
            self.send_method(number, commands.Channel.CloseOk)

    def _channel_method(self, ch: Channel, key: tuple[int, int], payload: bytes) -> None:
        """A channel-class method on an open channel."""
        action = channels.on_method(ch.state, key, len(self.channels), self.channel_max)
        if action is Action.CLIENT_CLOSE:
            ch.shutdown()
            del self.channels[ch.number]
            self.send_method(ch.number, commands.Channel.CloseOk)
            return
        handler = HANDLERS.get(key)
        if handler is None:
            raise AMQPError(COMMAND_INVALID, f"unexpected method {key[0]}.{key[1]}", *key)
        handler(ch, decode_method(payload)[1])

    def close_channel(self, ch: Channel, exc: AMQPError) -> None:
        """Close a channel from outside a frame (consumer timeout)."""
        if ch.state is ChannelState.OPEN and self.state is ConnState.OPEN:
            self._close_channel(ch, exc)
            self.flush()

    def _close_channel(self, ch: Channel, exc: AMQPError) -> None:
        self.broker.counters.channel_errors += 1
        # as RabbitMQ, every channel exception is logged with its code, text and method
        self.broker.log.error("channel error", peer=self.peer_label, user=self.user,
                              vhost=self.vhost.name if self.vhost else None, channel=ch.number,
                              reply_code=exc.reply_code, reply_text=exc.reply_text,
                              method=name_of((exc.class_id, exc.method_id))
                              if exc.class_id else None)
        ch.shutdown()
        ch.state = ChannelState.CLOSING
        self.send_method(ch.number, commands.Channel.Close, reply_code=exc.reply_code,
                         reply_text=exc.reply_text, class_id=exc.class_id,
                         method_id=exc.method_id)

    # --- connection class ----------------------------------------------------
    def _connection_method(self, payload: bytes) -> None:
        self._handle(self.handshake.receive(payload))

    def _handle(self, events: list[handshake.Event]) -> None:
        """Act on what the handshake state machine decided."""
        self.state = self.handshake.state
        for event in events:
            if isinstance(event, handshake.Send):
                self.write(method_frame(0, encode_method(event.method)))
            elif isinstance(event, handshake.Tuned):
                self.channel_max = event.channel_max
                self.frame_max = self.reader.frame_max = event.frame_max
                self.heartbeat = event.heartbeat
            elif isinstance(event, handshake.LoggedIn):
                self.client_properties = event.client_properties
                self.access = self.broker.user_context(event.user)
            elif isinstance(event, handshake.Opened):
                self.vhost = event.vhost
                self.broker.session_opened(self)
                self.broker.log.info("connection opened", peer=self.peer_label, user=self.user,
                                     vhost=self.vhost.name,
                                     client=client_name(self.client_properties))
            elif isinstance(event, handshake.Closing):
                self.close_reason = event.reason
                self._release()
            elif isinstance(event, handshake.Closed):
                if event.handshake_error:
                    self.broker.log.warning("handshake error", peer=self.peer_label,
                                            reason=event.reason)
                self._finish(event.reason)
            elif isinstance(event, handshake.ProtocolHeader):
                self.write(event.data)

    def _authenticate(self, mechanism: str, response: bytes) -> str:
        """The handshake's login callback: the user name, or AMQPError(ACCESS_REFUSED)."""
        if mechanism not in self.mechanisms:
            raise ValueError(f"unsupported authentication mechanism {mechanism!r}")
        self.auth_mechanism = mechanism
        if mechanism == sasl.EXTERNAL:
            name = self.peer_cert_login or ""
            self.user = name
            refusal = (self.broker.authenticate_external(name, self.peer_host) if name
                       else self.peer_cert_refusal or "no peer certificate")
        else:
            user, password = sasl.login(mechanism, response)  # ValueError: handshake error
            name = user.decode("utf-8", "replace")
            self.user = name
            refusal = self.broker.authenticate(name, password.decode("utf-8", "replace"),
                                               self.peer_host)
        if refusal:
            self.broker.log.warning("authentication failed", peer=self.peer_label, user=name,
                                    reason=refusal)
            self.hold_output_until = time.monotonic() + AUTH_FAILURE_DELAY
            raise AMQPError(ACCESS_REFUSED, f"Login was refused using authentication mechanism "
                            f"{mechanism}. For details see the broker logfile.", 10, 11)
        return name

    def _open_vhost(self, name: str) -> VHost:
        """The handshake's connection.open callback."""
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise AMQPError(NOT_ALLOWED, f"vhost {name} not found", 10, 40)
        try:
            permissions.check_vhost_access(self.broker.access, self.user, name)
        except AMQPError as exc:
            self.broker.log.warning("vhost access refused", peer=self.peer_label, user=self.user,
                                    vhost=name)
            raise exc.with_method(10, 40) from None
        return vhost

    # --- closing -------------------------------------------------------------
    def close_with(self, exc: AMQPError) -> None:
        """Close the connection with an error (or CONNECTION_FORCED at shutdown)."""
        if exc.reply_code != CONNECTION_FORCED and self.state is not ConnState.CLOSED:
            # forced closes (shutdown, a deleted vhost or user, the management API) are
            # told by the "connection closed" line and its reason
            self.broker.log.error("connection error", peer=self.peer_label, user=self.user or None,
                                  vhost=self.vhost.name if self.vhost else None,
                                  reply_code=exc.reply_code, reply_text=exc.reply_text,
                                  method=name_of((exc.class_id, exc.method_id))
                                  if exc.class_id else None)
        self._handle(self.handshake.close(exc))

    def force_close(self, text: str = "broker shutdown") -> None:
        self.close_with(AMQPError(CONNECTION_FORCED, text))

    def _finish(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason
        self.handshake.state = self.state = ConnState.CLOSED
        self._release()

    def _release(self) -> None:
        """Give back everything the connection holds; idempotent."""
        self.gate.clear()
        self.routing = None
        self.finished_routes.clear()
        self._held_input = 0
        self.throttled = self.alarm_blocked = False
        if self.paused:  # nothing is held back any more; close-ok must be read
            self.paused = False
            self.on_resume()
        for ch in list(self.channels.values()):
            ch.shutdown()
        self.channels.clear()
        for q in list(self.exclusive_queues):
            if not q.deleted:
                q.vhost.remove_queue(q)
        self.exclusive_queues.clear()

    def connection_lost(self) -> None:
        """The socket is gone (peer closed, I/O error, heartbeat timeout)."""
        if not self.close_reason:
            self.close_reason = "connection lost"
        self._release()
        self.handshake.lost()
        self.state = ConnState.CLOSED
        if self.broker.session_closed(self):
            self.broker.log.info("connection closed", peer=self.peer_label, user=self.user,
                                 vhost=self.vhost.name if self.vhost else None,
                                 reason=self.close_reason)
        else:
            self.broker.log.debug("connection closed before open", peer=self.peer_label,
                                  reason=self.close_reason)

    # --- publishes routed in slices --------------------------------------------
    def route_later(self, task: TopicRouting, ch: Channel, resume: Callable[[], object],
                    method: tuple[int, int] = (60, 40)) -> None:
        """A topic match needs more than one slice (a publish, or a tx.commit routing its
        publishes): hold this connection's input (its later frames keep their turn) while
        the shell runs the match a slice at a time (continue_routing), serving other
        connections in between; then resume() redoes the method with the match done."""
        self.routing = (task, ch, resume, method)
        self._held_input += 1
        self.paused = True

    def continue_routing(self) -> None:
        """One slice of the held publish's topic match; once it is done, publish again
        (routing takes the finished match) and read input again."""
        if self.routing is None:
            return
        task, ch, resume, method = self.routing
        try:
            if not task.step():
                return
            task.record(self.finished_routes)
            self.routing = None
            self._held_input -= 1
            if ch.state is ChannelState.OPEN:
                resume()  # may be deferred again
        except AMQPError as exc:
            exc.with_method(*method)
            if is_connection_error(exc.reply_code):
                self.close_with(exc)
            elif ch.state is ChannelState.OPEN:
                self._close_channel(ch, exc)
        except Exception as exc:  # a bug must cost one connection, not the broker
            self.broker.log.exception("internal error routing a publish", peer=self.peer_label)
            self.close_with(AMQPError(INTERNAL_ERROR, f"internal error ({exc.__class__.__name__})"))
        if self.routing is None:
            self.finished_routes.clear()
            self._gate_released()  # confirms out; input read again unless something holds it

    # --- heartbeats ----------------------------------------------------------
    def heartbeat_due(self, now: float, last_sent: float) -> bool:
        return bool(self.heartbeat) and now - last_sent >= self.heartbeat / 2

    def heartbeat_expired(self, now: float) -> bool:
        return bool(self.heartbeat) and now - self.last_received > 2 * self.heartbeat

    def send_heartbeat(self) -> None:
        self.write(HEARTBEAT_FRAME)


def _noop() -> None:
    return None


def _ignore_release(_arg: Any, _ok: bool) -> None:
    return None


__all__ = ["ConnState", "Connection"]
