"""Hand-written codecs for the methods every message walks through.

basic.publish and basic.ack arrive for every message and basic.deliver leaves
for every message, so they skip the generic table-driven codec. Message
properties stay as the raw bytes of the content header; the helpers here pick
out single fields (delivery mode, headers) only when a feature needs them, and
decode_properties / encode_properties round-trip them byte for byte for the few
features that rewrite them (dead-lettering, direct reply-to).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from .errors import SYNTAX_ERROR, AMQPError
from .fieldtable import TableError, decode_table, encode_table, skip_table, timestamp_bytes
from .fieldtable import Timestamp as Timestamp
from .frames import FRAME_BODY, FRAME_END_BYTE, FRAME_HEADER, FRAME_METHOD

if TYPE_CHECKING:
    from pamqp import commands

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_u16_pack = struct.Struct(">H").pack
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


# The basic properties in flag-bit order: (attribute, flag bit, kind). Attribute names
# are pamqp's (message_type for the AMQP "type" property).
_SHORTSTR, _OCTET, _TABLE, _TIMESTAMP = range(4)
_PROPERTY_FIELDS = (
    ("content_type", 0x8000, _SHORTSTR), ("content_encoding", 0x4000, _SHORTSTR),
    ("headers", 0x2000, _TABLE), ("delivery_mode", 0x1000, _OCTET),
    ("priority", 0x0800, _OCTET), ("correlation_id", 0x0400, _SHORTSTR),
    ("reply_to", 0x0200, _SHORTSTR), ("expiration", 0x0100, _SHORTSTR),
    ("message_id", 0x0080, _SHORTSTR), ("timestamp", 0x0040, _TIMESTAMP),
    ("message_type", 0x0020, _SHORTSTR), ("user_id", 0x0010, _SHORTSTR),
    ("app_id", 0x0008, _SHORTSTR), ("cluster_id", 0x0004, _SHORTSTR),
)
_MALFORMED = "malformed content header properties"


class Properties:
    """Decoded basic properties; None means absent.

    Short strings are str (bytes that are not UTF-8 survive as surrogate escapes),
    timestamp is a Timestamp (an int), headers keep each value's wire type and order,
    so encode_properties(decode_properties(raw)) == raw for what clients send (only
    undefined flag bits and booleans other than 0/1 are normalised).
    """

    __slots__ = ("app_id", "cluster_id", "content_encoding", "content_type", "correlation_id",
                 "delivery_mode", "expiration", "headers", "message_id", "message_type",
                 "priority", "reply_to", "timestamp", "user_id")
    content_type: str | None
    content_encoding: str | None
    headers: dict[str, Any] | None
    delivery_mode: int | None
    priority: int | None
    correlation_id: str | None
    reply_to: str | None
    expiration: str | None
    message_id: str | None
    timestamp: int | None
    message_type: str | None
    user_id: str | None
    app_id: str | None
    cluster_id: str | None

    def __init__(self, **values: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, values.pop(name, None))
        if values:
            raise TypeError(f"unknown properties: {', '.join(values)}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Properties):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__
                          if getattr(self, n) is not None)
        return f"Properties({shown})"


def _first_field(props: bytes) -> tuple[int, int]:
    """(first flag word, offset of the first property): further flag words (the
    continuation bit) are skipped, no basic property lives there."""
    flags = word = _u16(props, 0)[0]
    pos = 2
    while word & 1:
        word = _u16(props, pos)[0]
        pos += 2
    return flags, pos


def decode_properties(props: bytes) -> Properties:
    """Decode raw properties (the few features that read or rewrite several of them).

    Raises AMQPError(SYNTAX_ERROR) unless they are well formed; never for a value.
    """
    result = Properties()
    if not props:
        return result
    try:
        flags, pos = _first_field(props)
        for name, bit, kind in _PROPERTY_FIELDS:
            if not flags & bit:
                continue
            value: Any
            if kind == _SHORTSTR:
                n = props[pos]
                value = props[pos + 1: pos + 1 + n].decode("utf-8", "surrogateescape")
                pos += 1 + n
            elif kind == _OCTET:
                value = props[pos]
                pos += 1
            elif kind == _TABLE:
                value, pos = decode_table(props, pos, typed=True)
            else:
                value = Timestamp(_u64(props, pos)[0])
                pos += 8
            setattr(result, name, value)
    except (IndexError, struct.error, AMQPError):
        raise AMQPError(SYNTAX_ERROR, _MALFORMED) from None
    if pos != len(props):
        raise AMQPError(SYNTAX_ERROR, _MALFORMED)
    return result


def check_properties(props: bytes) -> None:
    """Raise SYNTAX_ERROR unless the raw properties are well formed (nothing is decoded:
    a well-formed value is never refused, whatever it is)."""
    if not props:
        return
    try:
        flags, pos = _first_field(props)
        for _name, bit, kind in _PROPERTY_FIELDS:
            if flags & bit:
                if kind == _SHORTSTR:
                    pos += 1 + props[pos]
                elif kind == _OCTET:
                    pos += 1
                elif kind == _TABLE:
                    pos = skip_table(props, pos)
                else:
                    pos += 8
    except (IndexError, struct.error, TableError):
        raise AMQPError(SYNTAX_ERROR, _MALFORMED) from None
    if pos != len(props):  # truncated, or bytes after the last property
        raise AMQPError(SYNTAX_ERROR, _MALFORMED)


def message_headers(props: bytes) -> dict[str, Any] | None:
    """The headers table of raw properties (plain values, for matching), or None."""
    flags = flags_of(props)
    if not flags & FLAG_HEADERS:
        return None
    try:
        pos = _first_field(props)[1]
        if flags & FLAG_CONTENT_TYPE:
            pos = _skip_shortstr(props, pos)
        if flags & FLAG_CONTENT_ENCODING:
            pos = _skip_shortstr(props, pos)
        return decode_table(props, pos)[0]
    except (IndexError, struct.error, AMQPError):
        return None


def encode_properties(properties: Properties | commands.Basic.Properties) -> bytes:
    """Raw properties: every attribute that is not None, in flag order."""
    if not isinstance(properties, Properties):
        return properties.marshal()  # a pamqp object
    flags = 0
    parts = []
    for name, bit, kind in _PROPERTY_FIELDS:
        value = getattr(properties, name)
        if value is None:
            continue
        flags |= bit
        if kind == _SHORTSTR:
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            if len(raw) > 255:
                raise ValueError(f"property {name} is longer than 255 bytes")
            parts.append(bytes((len(raw),)) + raw)
        elif kind == _OCTET:
            parts.append(bytes((value,)))
        elif kind == _TABLE:
            parts.append(encode_table(value))
        else:
            parts.append(timestamp_bytes(value))
    return _u16_pack(flags) + b"".join(parts)


_deliver_head = struct.Struct(">BHIHH")
_content_hdr = struct.Struct(">BHIHHQ")
_body_head = struct.Struct(">BHI")
_tag_bits = struct.Struct(">QB")


# a body at least this big is handed to the output apart from its frames (deliver_frames)
BIG_BODY = 16 * 1024


def deliver_frames(channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool,
                   exchange: bytes, routing_key: bytes, properties: bytes, body: bytes,
                   frame_max: int) -> bytes | list[bytes | memoryview]:
    """basic.deliver + content header + body frames as one bytes object; for a body of
    BIG_BODY bytes or more that fits one frame, as [frames before it, body, frame end];
    for a body over several frames, as a list of parts with views of the body.

    consumer_tag, exchange and routing_key arrive pre-encoded with their
    length octet so nothing is re-encoded per delivery.
    """
    method_size = 4 + len(consumer_tag) + 9 + len(exchange) + len(routing_key)
    body_len = len(body)
    parts: list[bytes | memoryview] = [
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
            if body_len >= BIG_BODY:
                # the frames around a big body are joined, the body is not: it is copied
                # once, into the connection's output, not twice
                return [b"".join(parts[:-2]), body, FRAME_END_BYTE]
        else:
            # a body over several frames: views of it, not slices (copies); the pieces are
            # joined once, into the connection's output
            view = memoryview(body)
            for start in range(0, body_len, chunk):
                piece = view[start: start + chunk]
                parts += (_body_head.pack(FRAME_BODY, channel, len(piece)), piece, FRAME_END_BYTE)
            return parts
    return b"".join(parts)


def shortstr(value: str) -> bytes:
    """A short string with its length octet, as deliver_frames wants it."""
    raw = value.encode("utf-8", "surrogateescape")[:255]
    return bytes((len(raw),)) + raw
