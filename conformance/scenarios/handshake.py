"""Connection handshake and negotiation."""

from __future__ import annotations

import pika
import pika.exceptions as pex

from ..ctx import describe_exc, pump
from ..registry import scenario


def _server_props(conn) -> dict:
    props = dict(conn._impl.server_properties)
    caps = props.get("capabilities", {})
    return {
        "keys": sorted(props),
        "capabilities": {k: caps[k] for k in sorted(caps)},
        "server_properties": {k: props[k] for k in props if k != "capabilities"},
    }


@scenario("handshake")
def default_tune(ctx):
    """Default negotiation: what frame_max/channel_max/heartbeat the server proposes and pika
    uses."""
    proposed = {}

    def hb(conn, server_value):
        proposed["heartbeat"] = server_value
        return server_value

    conn = ctx.connect(heartbeat=hb)
    p = conn._impl.params
    ctx.log("tuned", server_heartbeat=proposed.get("heartbeat"), frame_max=p.frame_max,
            channel_max=p.channel_max, heartbeat=p.heartbeat)
    conn.close()


@scenario("handshake")
def client_lowers_limits(ctx):
    """The client asks for smaller frame_max/channel_max and heartbeat 0: negotiated minimums."""
    conn = ctx.connect(frame_max=4096, channel_max=16, heartbeat=0)
    p = conn._impl.params
    ctx.log("tuned", frame_max=p.frame_max, channel_max=p.channel_max, heartbeat=p.heartbeat)
    # a 10 kB message must be split into 3 body frames of <= 4096 bytes and still arrive intact
    ch = conn.channel()
    q = ctx.queue(ch, "q")
    body = bytes(range(256)) * 40
    ch.basic_publish("", q, body)
    m, _, got = ch.basic_get(q, auto_ack=True)
    ctx.log("roundtrip", same=got == body, length=len(got))
    conn.close()


@scenario("handshake")
def heartbeat_client_value(ctx):
    """Client asks for heartbeat 7 s: the lower of the two values is used."""
    conn = ctx.connect(heartbeat=7)
    ctx.log("tuned", heartbeat=conn._impl.params.heartbeat)
    conn.close()


@scenario("handshake")
def server_properties(ctx):
    """Server properties keys and capability flags a client sees (identity strings normalised)."""
    conn = ctx.connect()
    ctx.log("server_properties", **_server_props(conn))
    conn.close()


@scenario("handshake")
def bad_credentials(ctx):
    """Wrong password: connection refused with 403 ACCESS_REFUSED."""
    try:
        pika.BlockingConnection(ctx.params(credentials=pika.PlainCredentials("guest", "wrong")))
        ctx.log("connected")
    except pex.AMQPError as exc:
        ctx.log("refused", **describe_exc(exc))


@scenario("handshake")
def unknown_user(ctx):
    """Unknown user name: refused with 403 ACCESS_REFUSED."""
    try:
        credentials = pika.PlainCredentials(ctx.name("nobody"), "x")
        pika.BlockingConnection(ctx.params(credentials=credentials))
        ctx.log("connected")
    except pex.AMQPError as exc:
        ctx.log("refused", **describe_exc(exc))


@scenario("handshake")
def unknown_vhost(ctx):
    """connection.open on a vhost that does not exist: 530 NOT_ALLOWED."""
    try:
        pika.BlockingConnection(ctx.params(virtual_host=ctx.name("vhost")))
        ctx.log("connected")
    except pex.AMQPError as exc:
        ctx.log("refused", **describe_exc(exc))


@scenario("handshake")
def many_channels(ctx):
    """Open 50 channels on one connection, use each, close them; the connection stays usable."""
    conn = ctx.connect()
    chans = [conn.channel() for _ in range(50)]
    ctx.log("opened", numbers=[c.channel_number for c in chans][:5], count=len(chans))
    q = ctx.queue(chans[0], "q")
    for c in chans:
        c.confirm_delivery()
        c.basic_publish("", q, str(c.channel_number).encode())
    for c in chans[1:]:
        c.close()
    ok = chans[0].queue_declare(q, passive=True)
    ctx.log("count", message_count=ok.method.message_count)
    conn.close()


@scenario("handshake")
def connection_close_clean(ctx):
    """Client-initiated close: pika sees a clean close (200) and a fresh connection works."""
    conn = ctx.connect()
    conn.channel()
    conn.close()
    ctx.log("closed", is_closed=conn.is_closed)
    conn2 = ctx.connect()
    ctx.log("reconnected", is_open=conn2.is_open)
    conn2.close()


@scenario("handshake")
def reject_channel_reopen(ctx):
    """A second channel.open on an already open channel number: connection error 504
    CHANNEL_ERROR."""
    conn = ctx.connect()
    ch = conn.channel()
    conn._impl._send_method(ch.channel_number, pika.spec.Channel.Open())
    try:
        pump(conn, 1.0)
        pump(conn, 0.5)
        ctx.log("no_error", is_open=conn.is_open)
    except pex.AMQPError as exc:
        ctx.log("closed", **describe_exc(exc))


@scenario("handshake")
def method_on_unopened_channel(ctx):
    """A queue.declare on a channel number never opened: connection error 504 CHANNEL_ERROR."""
    conn = ctx.connect()
    conn.channel()
    ctx.track_queue(ctx.name("never"))
    conn._impl._send_method(9, pika.spec.Queue.Declare(queue=ctx.name("never"), auto_delete=True))
    try:
        pump(conn, 1.0)
        pump(conn, 0.5)
        ctx.log("no_error", is_open=conn.is_open)
    except pex.AMQPError as exc:
        ctx.log("closed", **describe_exc(exc))
