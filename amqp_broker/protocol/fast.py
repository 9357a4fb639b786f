"""Hand-written codecs for the methods every message walks through.

basic.publish and basic.ack arrive for every message and basic.deliver leaves
for every message, so they skip the generic table-driven codec. Message
properties stay as the raw bytes of the content header; the helpers here pick
out single fields (delivery mode, headers) only when a feature needs them.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands

from ..errors import SYNTAX_ERROR, AMQPError
from .frames import FRAME_BODY, FRAME_END_BYTE, FRAME_HEADER, FRAME_METHOD

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_ack = struct.Struct(">QB").unpack_from
_content_head = struct.Struct(">HHQ").unpack_from

# properties flag bits (first flag word)
FLAG_CONTENT_TYPE = 0x8000
FLAG_CONTENT_ENCODING = 0x4000
FLAG_HEADERS = 0x2000
FLAG_DELIVERY_MODE = 0x1000
FLAG_PRIORITY = 0x0800
FLAG_EXPIRATION = 0x0100
FLAG_REPLY_TO = 0x0200
FLAG_USER_ID = 0x0010
FLAG_SPECIAL = FLAG_EXPIRATION | FLAG_USER_ID | FLAG_REPLY_TO


def flags_of(props: bytes) -> int:
    """The first property flag word (0 for empty properties)."""
    return (props[0] << 8) | props[1] if len(props) >= 2 else 0


def decode_publish(payload: bytes) -> tuple[str, str, int]:
    """basic.publish payload -> (exchange, routing_key, flag bits: 1 mandatory, 2 immediate)."""
    try:
        n = payload[6]
        pos = 7 + n
        exchange = payload[7:pos].decode("utf-8", "surrogateescape") if n else ""
        m = payload[pos]
        routing_key = payload[pos + 1: pos + 1 + m].decode("utf-8", "surrogateescape")
        bits = payload[pos + 1 + m]
    except IndexError:
        raise AMQPError(SYNTAX_ERROR, "malformed basic.publish frame", 60, 40) from None
    return exchange, routing_key, bits


def decode_ack(payload: bytes) -> tuple[int, int]:
    """basic.ack / basic.nack / basic.reject payload -> (delivery_tag, bits)."""
    try:
        return _ack(payload, 4)
    except struct.error:
        raise AMQPError(SYNTAX_ERROR, "malformed acknowledgement frame") from None


def decode_content_header(payload: bytes) -> tuple[int, int, bytes]:
    """Content header payload -> (class id, body size, raw properties)."""
    try:
        class_id, _weight, body_size = _content_head(payload, 0)
    except struct.error:
        raise AMQPError(SYNTAX_ERROR, "malformed content header frame") from None
    return class_id, body_size, payload[12:]


def _skip_shortstr(props: bytes, pos: int) -> int:
    return pos + 1 + props[pos]


def delivery_mode(props: bytes) -> int:
    """The delivery-mode property (0 when absent) read straight from raw properties."""
    flags = flags_of(props)
    if not flags & FLAG_DELIVERY_MODE:
        return 0
    pos = 2
    try:
        if flags & FLAG_CONTENT_TYPE:
            pos = _skip_shortstr(props, pos)
        if flags & FLAG_CONTENT_ENCODING:
            pos = _skip_shortstr(props, pos)
        if flags & FLAG_HEADERS:
            pos += 4 + _u32(props, pos)[0]
        return props[pos]
    except (IndexError, struct.error):
        return 0


def decode_properties(props: bytes) -> commands.Basic.Properties:
    """Fully decode raw properties (slow path: headers exchange, tests)."""
    result = commands.Basic.Properties()
    if len(props) < 2:
        return result
    flags = 0
    pos = 0
    index = 0
    while True:
        word = _u16(props, pos)[0]
        pos += 2
        flags |= word << (16 * index)
        index += 1
        if not word & 1:
            break
    result.unmarshal(flags, props[pos:])
    return result


def check_properties(props: bytes) -> None:
    """Raise SYNTAX_ERROR unless the raw properties decode."""
    try:
        decode_properties(props)
    except Exception:
        raise AMQPError(SYNTAX_ERROR, "malformed content header properties") from None


def message_headers(props: bytes) -> dict[str, Any] | None:
    """The headers table of raw properties, or None."""
    if not flags_of(props) & FLAG_HEADERS:
        return None
    try:
        return decode_properties(props).headers
    except Exception:
        return None


def encode_properties(properties: commands.Basic.Properties) -> bytes:
    return properties.marshal()


_deliver_head = struct.Struct(">BHIHH")
_content_hdr = struct.Struct(">BHIHHQ")
_body_head = struct.Struct(">BHI")
_tag_bits = struct.Struct(">QB")


def deliver_frames(channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool,
                   exchange: bytes, routing_key: bytes, properties: bytes, body: bytes,
                   frame_max: int) -> bytes:
    """basic.deliver + content header + body frames as one bytes object.

    consumer_tag, exchange and routing_key arrive pre-encoded with their
    length octet so nothing is re-encoded per delivery.
    """
    method_size = 4 + len(consumer_tag) + 9 + len(exchange) + len(routing_key)
    body_len = len(body)
    parts = [
        _deliver_head.pack(FRAME_METHOD, channel, method_size, 60, 60),
        consumer_tag,
        _tag_bits.pack(delivery_tag, 1 if redelivered else 0),
        exchange,
        routing_key,
        FRAME_END_BYTE,
        _content_hdr.pack(FRAME_HEADER, channel, 12 + len(properties), 60, 0, body_len),
        properties,
        FRAME_END_BYTE,
    ]
    if body_len:
        chunk = frame_max - 8
        if body_len <= chunk:
            parts += (_body_head.pack(FRAME_BODY, channel, body_len), body, FRAME_END_BYTE)
        else:
            for start in range(0, body_len, chunk):
                piece = body[start: start + chunk]
                parts += (_body_head.pack(FRAME_BODY, channel, len(piece)), piece, FRAME_END_BYTE)
    return b"".join(parts)


def shortstr(value: str) -> bytes:
    """A short string with its length octet, as deliver_frames wants it."""
    raw = value.encode("utf-8", "surrogateescape")[:255]
    return bytes((len(raw),)) + raw
