"""RabbitMQ parity details: default exchange, idempotent unbind, exclusive locks, channel_max,
frame size slack, queue types and arguments."""

from __future__ import annotations

import socket
import time

from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from ..registry import scenario

G = "parity"


@scenario(G)
def default_exchange_declare(ctx):
    """exchange.declare of "" is 403, passive or not; an unknown type is 503 before that;
    redeclaring amq.direct is an equivalence check (406 for another type), not a 403."""
    conn = ctx.connect()
    for passive in (True, False):
        with ctx.expect("declare_default", passive=passive):
            conn.channel().exchange_declare("", "direct", passive=passive)
    with ctx.expect("declare_default_unknown_type"):
        conn.channel().exchange_declare("", "no-such-type")
    ctx.log("connection", is_open=conn.is_open)
    conn = ctx.connect()
    with ctx.expect("redeclare_amq_direct"):
        conn.channel().exchange_declare("amq.direct", "direct", durable=True)
    with ctx.expect("redeclare_amq_direct_as_fanout"):
        conn.channel().exchange_declare("amq.direct", "fanout", durable=True)



@scenario(G)
def unbind_idempotent(ctx):
    """queue.unbind / exchange.unbind of a missing binding, queue or exchange is unbind-ok;
    the default exchange is 403 even then; another connection's exclusive queue is 405 only
    when the binding exists."""
    conn = ctx.connect()
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    x = ctx.exchange(ch, "x", "direct")
    gone_q, gone_x = ctx.name("gone-q"), ctx.name("gone-x")
    for label, queue, exchange in (("binding", q, x), ("queue", gone_q, x),
                                   ("exchange", q, gone_x), ("both", gone_q, gone_x)):
        with ctx.expect("queue_unbind_missing", missing=label):
            conn.channel().queue_unbind(queue, exchange, "k")
    for label, dest, source in (("binding", x, "amq.direct"), ("destination", gone_x, x),
                                ("source", x, gone_x), ("both", gone_x, ctx.name("gone-x2"))):
        with ctx.expect("exchange_unbind_missing", missing=label):
            conn.channel().exchange_unbind(dest, source, "k")
    with ctx.expect("queue_unbind_default_exchange_missing_queue"):
        conn.channel().queue_unbind(gone_q, "", "k")
    with ctx.expect("exchange_unbind_default_source"):
        conn.channel().exchange_unbind(gone_x, "", "k")
    owner = ctx.connect()
    och = owner.channel()
    eq = ctx.queue(och, "excl", exclusive=True)
    och.queue_bind(eq, x, "bound")
    with ctx.expect("unbind_locked_not_bound"):
        conn.channel().queue_unbind(eq, x, "not-bound")
    with ctx.expect("unbind_locked_missing_exchange"):
        conn.channel().queue_unbind(eq, gone_x, "bound")
    with ctx.expect("unbind_locked_bound"):
        conn.channel().queue_unbind(eq, x, "bound")
    och.basic_publish(x, "bound", b"m")
    method, _props, body = och.basic_get(eq, auto_ack=True)
    ctx.log("still_bound", body=body)
    with ctx.expect("unbind_no_previous_queue"):
        ctx.connect().channel().queue_unbind("", "amq.direct", "k")


@scenario(G)
def exclusive_flag_mismatch(ctx):
    """Redeclaring an exclusive queue with another exclusive flag is 405 on any connection
    (never 406); the durable flag of an exclusive queue is not compared."""
    owner = ctx.connect()
    q = ctx.queue(owner.channel(), "excl", exclusive=True)
    other = ctx.connect()
    for exclusive in (True, False):
        with ctx.expect("other_connection", exclusive=exclusive):
            other.channel().queue_declare(q, exclusive=exclusive)
    with ctx.expect("same_connection", exclusive=False):
        owner.channel().queue_declare(q, exclusive=False)
    with ctx.expect("same_connection", exclusive=False, durable=True):
        owner.channel().queue_declare(q, exclusive=False, durable=True)
    with ctx.expect("same_connection", exclusive=True, durable=True):
        owner.channel().queue_declare(q, exclusive=True, durable=True)
    shared = ctx.queue(owner.channel(), "shared", auto_delete=True)
    with ctx.expect("shared_queue_redeclared_exclusive"):
        owner.channel().queue_declare(shared, exclusive=True, auto_delete=True)


@scenario(G)
def channel_max_counts_open_channels(ctx):
    """With a negotiated channel_max of 2, channels 65535 and 3 open; after closing one
    another opens; one more open channel is connection error 530 NOT_ALLOWED."""
    conn = ctx.connect(channel_max=2)
    ctx.log("negotiated", channel_max=conn._impl.params.channel_max)
    channels = {}
    for number in (65535, 3):
        with ctx.expect("open", channel=number):
            channels[number] = conn.channel(channel_number=number)
    channels[3].close()
    with ctx.expect("open_after_close", channel=7):
        channels[7] = conn.channel(channel_number=7)
    with ctx.expect("open_one_too_many", channel=9):
        conn.channel(channel_number=9)
    ctx.log("connection", is_open=conn.is_open)


class _Raw:
    """Just enough AMQP over a socket (pamqp frames) to send a frame pika never would."""

    def __init__(self, ctx, frame_max: int):
        self.sock = socket.create_connection((ctx.host, ctx.port), timeout=10)
        ctx.on_cleanup(self.sock.close)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(commands.Connection.Start)
        self.send(0, commands.Connection.StartOk(
            client_properties={"capabilities": {"authentication_failure_close": True}},
            mechanism="PLAIN", response=f"\x00{ctx.user}\x00{ctx.password}", locale="en_US"))
        tune = self.expect(commands.Connection.Tune)
        self.send(0, commands.Connection.TuneOk(channel_max=tune.channel_max,
                                                frame_max=frame_max, heartbeat=0))
        self.send(0, commands.Connection.Open(virtual_host=ctx.vhost))
        self.expect(commands.Connection.OpenOk)

    def send(self, channel: int, value) -> None:
        self.sock.sendall(frame.marshal(value, channel))

    def read(self):
        while True:
            if len(self.buf) >= 7:
                size = int.from_bytes(self.buf[3:7], "big")
                if len(self.buf) >= size + 8:
                    used, _channel, value = frame.unmarshal(self.buf)
                    self.buf = self.buf[used:]
                    return value
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:  # RabbitMQ drops the socket after a fatal frame error
                return None
            if not data:
                return None
            self.buf += data

    def expect(self, kind):
        value = self.read()
        assert isinstance(value, kind), value
        return value


@scenario(G)
def frame_max_slack(ctx):
    """With frame_max 4096, body frames with 4088 and 4096 payload bytes are accepted (RabbitMQ
    allows 8 bytes over the spec); 4097 is connection error 501 FRAME_ERROR."""
    raw = _Raw(ctx, 4096)
    raw.send(1, commands.Channel.Open())
    raw.expect(commands.Channel.OpenOk)
    raw.send(1, commands.Queue.Declare(queue="", exclusive=True))
    queue = raw.expect(commands.Queue.DeclareOk).queue
    raw.send(1, commands.Confirm.Select())
    raw.expect(commands.Confirm.SelectOk)
    for size in (4088, 4096, 4097):
        data = frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
        data += frame.marshal(ContentHeader(0, size, commands.Basic.Properties()), 1)
        body = frame.marshal(ContentBody(b"x" * size), 1)
        raw.sock.sendall(data + (body if size <= 4096 else body[:7]))
        reply = raw.read()
        if isinstance(reply, commands.Connection.Close):
            ctx.log("body_frame", size=size, reply="connection.close",
                    reply_code=reply.reply_code, reply_text=reply.reply_text,
                    class_id=reply.class_id, method_id=reply.method_id)
            raw.send(0, commands.Connection.CloseOk())
            started = time.monotonic()
            while raw.read() is not None and time.monotonic() - started < 10:
                pass
            ctx.log("socket_closed")
        else:
            ctx.log("body_frame", size=size, reply=type(reply).__name__)


@scenario(G)
def queue_types_and_arguments(ctx):
    """x-queue-type classic and quorum (durable, not exclusive, not auto-delete) are accepted;
    an unknown type, arguments of another queue type and bad values are 406; unknown non-RabbitMQ
    arguments are ignored; a redeclare compares the arguments of the queue's type."""
    conn = ctx.connect()
    quorum = {"x-queue-type": "quorum"}
    cases = [
        ("classic", {}, {"x-queue-type": "classic"}),
        ("quorum", {"durable": True}, quorum),
        ("quorum_tuning", {"durable": True},
         {**quorum, "x-quorum-initial-group-size": 3, "x-queue-leader-locator": "client-local",
          "x-max-in-memory-length": 10, "x-dead-letter-strategy": "at-most-once"}),
        ("quorum_non_durable", {}, quorum),
        ("quorum_exclusive", {"durable": True, "exclusive": True}, quorum),
        ("quorum_auto_delete", {"durable": True, "auto_delete": True}, quorum),
        ("quorum_max_priority", {"durable": True}, {**quorum, "x-max-priority": 3}),
        ("quorum_queue_mode", {"durable": True}, {**quorum, "x-queue-mode": "lazy"}),
        ("stream_non_durable", {}, {"x-queue-type": "stream"}),
        ("unknown_type", {}, {"x-queue-type": "bogus"}),
        ("type_not_a_string", {}, {"x-queue-type": 5}),
        ("classic_max_age", {}, {"x-max-age": "1D"}),
        ("classic_initial_group_size", {}, {"x-quorum-initial-group-size": 3}),
        ("classic_lazy_v2", {}, {"x-queue-mode": "lazy", "x-queue-version": 2}),
        ("classic_bad_mode", {}, {"x-queue-mode": "bogus"}),
        ("classic_bad_version", {}, {"x-queue-version": 3}),
        ("not_rabbitmqs", {}, {"x-foo": 1}),
        ("max_length_string", {}, {"x-max-length": "abc"}),
        ("routing_key_without_dlx", {}, {"x-dead-letter-routing-key": "k"}),
    ]
    for label, props, arguments in cases:
        name = ctx.name(label)
        ctx.track_queue(name)
        with ctx.expect("declare", case=label):
            conn.channel().queue_declare(name, arguments=arguments, **props)
    with ctx.expect("declare", case="server_named_quorum"):
        conn.channel().queue_declare("", durable=True, arguments=quorum)
    classic = ctx.name("classic")
    for label, arguments in (("x_queue_type_classic", {"x-queue-type": "classic"}),
                             ("x_foo", {"x-foo": 2}),
                             ("quorum_only_argument", {"x-max-in-memory-length": 3}),
                             ("x_queue_mode", {"x-queue-mode": "lazy"})):
        with ctx.expect("redeclare_classic", change=label):
            conn.channel().queue_declare(classic, arguments=arguments)
    q = ctx.name("quorum")
    for label, arguments in (("no_type", {}), ("classic", {"x-queue-type": "classic"}),
                             ("classic_only_argument", {**quorum, "x-max-priority": 2}),
                             ("x_max_length", {**quorum, "x-max-length": 5})):
        with ctx.expect("redeclare_quorum", change=label):
            conn.channel().queue_declare(q, durable=True, arguments=arguments)
