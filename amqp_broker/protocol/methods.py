"""AMQP 0-9-1 method codec: the method table and a table-driven encoder/decoder.

Every method is described once, as (class id, method id, name, fields). The
generic decoder turns a method frame payload into (method key, args dict); the
few methods on the hot path (basic.publish, basic.ack, basic.deliver) also have
hand-written struct codecs in protocol.fast. Field tables use pamqp's codec.
Any malformed payload raises AMQPError(FRAME_ERROR), as RabbitMQ does — never anything else.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import decode as pdecode
from pamqp import encode as pencode

from ..errors import FRAME_ERROR, AMQPError

# field type codes
OCTET, SHORT, LONG, LONGLONG, SHORTSTR, LONGSTR, BIT, TABLE, TIMESTAMP = (
    "octet", "short", "long", "longlong", "shortstr", "longstr", "bit", "table", "timestamp")

_R = ("reserved_1", SHORT)

# (class_id, method_id): (name, fields)
METHODS: dict[tuple[int, int], tuple[str, tuple[tuple[str, str], ...]]] = {
    (10, 10): ("connection.start", (("version_major", OCTET), ("version_minor", OCTET),
                                    ("server_properties", TABLE), ("mechanisms", LONGSTR),
                                    ("locales", LONGSTR))),
    (10, 11): ("connection.start-ok", (("client_properties", TABLE), ("mechanism", SHORTSTR),
                                       ("response", LONGSTR), ("locale", SHORTSTR))),
    (10, 20): ("connection.secure", (("challenge", LONGSTR),)),
    (10, 21): ("connection.secure-ok", (("response", LONGSTR),)),
    (10, 30): ("connection.tune", (("channel_max", SHORT), ("frame_max", LONG),
                                   ("heartbeat", SHORT))),
    (10, 31): ("connection.tune-ok", (("channel_max", SHORT), ("frame_max", LONG),
                                      ("heartbeat", SHORT))),
    (10, 40): ("connection.open", (("virtual_host", SHORTSTR), ("reserved_1", SHORTSTR),
                                   ("reserved_2", BIT))),
    (10, 41): ("connection.open-ok", (("reserved_1", SHORTSTR),)),
    (10, 50): ("connection.close", (("reply_code", SHORT), ("reply_text", SHORTSTR),
                                    ("class_id", SHORT), ("method_id", SHORT))),
    (10, 51): ("connection.close-ok", ()),
    (10, 60): ("connection.blocked", (("reason", SHORTSTR),)),
    (10, 61): ("connection.unblocked", ()),
    (10, 70): ("connection.update-secret", (("new_secret", LONGSTR), ("reason", SHORTSTR))),
    (10, 71): ("connection.update-secret-ok", ()),
    (20, 10): ("channel.open", (("reserved_1", SHORTSTR),)),
    (20, 11): ("channel.open-ok", (("reserved_1", LONGSTR),)),
    (20, 20): ("channel.flow", (("active", BIT),)),
    (20, 21): ("channel.flow-ok", (("active", BIT),)),
    (20, 40): ("channel.close", (("reply_code", SHORT), ("reply_text", SHORTSTR),
                                 ("class_id", SHORT), ("method_id", SHORT))),
    (20, 41): ("channel.close-ok", ()),
    (40, 10): ("exchange.declare", (_R, ("exchange", SHORTSTR), ("type", SHORTSTR),
                                    ("passive", BIT), ("durable", BIT), ("auto_delete", BIT),
                                    ("internal", BIT), ("nowait", BIT), ("arguments", TABLE))),
    (40, 11): ("exchange.declare-ok", ()),
    (40, 20): ("exchange.delete", (_R, ("exchange", SHORTSTR), ("if_unused", BIT),
                                   ("nowait", BIT))),
    (40, 21): ("exchange.delete-ok", ()),
    (40, 30): ("exchange.bind", (_R, ("destination", SHORTSTR), ("source", SHORTSTR),
                                 ("routing_key", SHORTSTR), ("nowait", BIT),
                                 ("arguments", TABLE))),
    (40, 31): ("exchange.bind-ok", ()),
    (40, 40): ("exchange.unbind", (_R, ("destination", SHORTSTR), ("source", SHORTSTR),
                                   ("routing_key", SHORTSTR), ("nowait", BIT),
                                   ("arguments", TABLE))),
    (40, 51): ("exchange.unbind-ok", ()),
    (50, 10): ("queue.declare", (_R, ("queue", SHORTSTR), ("passive", BIT), ("durable", BIT),
                                 ("exclusive", BIT), ("auto_delete", BIT), ("nowait", BIT),
                                 ("arguments", TABLE))),
    (50, 11): ("queue.declare-ok", (("queue", SHORTSTR), ("message_count", LONG),
                                    ("consumer_count", LONG))),
    (50, 20): ("queue.bind", (_R, ("queue", SHORTSTR), ("exchange", SHORTSTR),
                              ("routing_key", SHORTSTR), ("nowait", BIT), ("arguments", TABLE))),
    (50, 21): ("queue.bind-ok", ()),
    (50, 30): ("queue.purge", (_R, ("queue", SHORTSTR), ("nowait", BIT))),
    (50, 31): ("queue.purge-ok", (("message_count", LONG),)),
    (50, 40): ("queue.delete", (_R, ("queue", SHORTSTR), ("if_unused", BIT), ("if_empty", BIT),
                                ("nowait", BIT))),
    (50, 41): ("queue.delete-ok", (("message_count", LONG),)),
    (50, 50): ("queue.unbind", (_R, ("queue", SHORTSTR), ("exchange", SHORTSTR),
                                ("routing_key", SHORTSTR), ("arguments", TABLE))),
    (50, 51): ("queue.unbind-ok", ()),
    (60, 10): ("basic.qos", (("prefetch_size", LONG), ("prefetch_count", SHORT),
                             ("global", BIT))),
    (60, 11): ("basic.qos-ok", ()),
    (60, 20): ("basic.consume", (_R, ("queue", SHORTSTR), ("consumer_tag", SHORTSTR),
                                 ("no_local", BIT), ("no_ack", BIT), ("exclusive", BIT),
                                 ("nowait", BIT), ("arguments", TABLE))),
    (60, 21): ("basic.consume-ok", (("consumer_tag", SHORTSTR),)),
    (60, 30): ("basic.cancel", (("consumer_tag", SHORTSTR), ("nowait", BIT))),
    (60, 31): ("basic.cancel-ok", (("consumer_tag", SHORTSTR),)),
    (60, 40): ("basic.publish", (_R, ("exchange", SHORTSTR), ("routing_key", SHORTSTR),
                                 ("mandatory", BIT), ("immediate", BIT))),
    (60, 50): ("basic.return", (("reply_code", SHORT), ("reply_text", SHORTSTR),
                                ("exchange", SHORTSTR), ("routing_key", SHORTSTR))),
    (60, 60): ("basic.deliver", (("consumer_tag", SHORTSTR), ("delivery_tag", LONGLONG),
                                 ("redelivered", BIT), ("exchange", SHORTSTR),
                                 ("routing_key", SHORTSTR))),
    (60, 70): ("basic.get", (_R, ("queue", SHORTSTR), ("no_ack", BIT))),
    (60, 71): ("basic.get-ok", (("delivery_tag", LONGLONG), ("redelivered", BIT),
                                ("exchange", SHORTSTR), ("routing_key", SHORTSTR),
                                ("message_count", LONG))),
    (60, 72): ("basic.get-empty", (("reserved_1", SHORTSTR),)),
    (60, 80): ("basic.ack", (("delivery_tag", LONGLONG), ("multiple", BIT))),
    (60, 90): ("basic.reject", (("delivery_tag", LONGLONG), ("requeue", BIT))),
    (60, 100): ("basic.recover-async", (("requeue", BIT),)),
    (60, 110): ("basic.recover", (("requeue", BIT),)),
    (60, 111): ("basic.recover-ok", ()),
    (60, 120): ("basic.nack", (("delivery_tag", LONGLONG), ("multiple", BIT),
                               ("requeue", BIT))),
    (85, 10): ("confirm.select", (("nowait", BIT),)),
    (85, 11): ("confirm.select-ok", ()),
    (90, 10): ("tx.select", ()),
    (90, 11): ("tx.select-ok", ()),
    (90, 20): ("tx.commit", ()),
    (90, 21): ("tx.commit-ok", ()),
    (90, 30): ("tx.rollback", ()),
    (90, 31): ("tx.rollback-ok", ()),
}

NAMES = {name: key for key, (name, _) in METHODS.items()}
CONTENT_METHODS = frozenset({(60, 40), (60, 50), (60, 60), (60, 71)})

_u8 = struct.Struct(">B").unpack_from
_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_head = struct.Struct(">HH")


def decode_str(raw: bytes) -> str:
    # RabbitMQ treats names as binaries; surrogateescape round-trips any bytes.
    return raw.decode("utf-8", "surrogateescape")


def encode_str(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def decode_table(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    (size,) = _u32(data, offset)
    end = offset + 4 + size
    if end > len(data):
        raise AMQPError(FRAME_ERROR, "field table runs past the end of the frame")
    _, table = pdecode.field_table(data[offset:end])
    return table, end


def encode_table(table: dict[str, Any] | None) -> bytes:
    return pencode.field_table(table or {})


def decode_method(payload: bytes) -> tuple[tuple[int, int], dict[str, Any]]:
    """Decode a method frame payload into ((class id, method id), args)."""
    if len(payload) < 4:
        raise AMQPError(FRAME_ERROR, "method frame too short")
    key = _head.unpack_from(payload, 0)
    spec = METHODS.get(key)
    if spec is None:
        raise AMQPError(FRAME_ERROR, f"unknown method {key[0]}.{key[1]}", *key)
    args: dict[str, Any] = {}
    pos = 4
    bit = 0
    try:
        for name, kind in spec[1]:
            if kind == BIT:
                if bit == 0 or bit == 8:
                    bits = payload[pos]
                    pos += 1
                    bit = 0
                args[name] = bool(bits & (1 << bit))
                bit += 1
                continue
            bit = 0
            if kind == SHORTSTR:
                n = payload[pos]
                raw = payload[pos + 1: pos + 1 + n]
                if len(raw) != n:
                    raise IndexError
                args[name] = decode_str(raw)
                pos += 1 + n
            elif kind == SHORT:
                (args[name],) = _u16(payload, pos)
                pos += 2
            elif kind == LONG:
                (args[name],) = _u32(payload, pos)
                pos += 4
            elif kind == LONGLONG or kind == TIMESTAMP:
                (args[name],) = _u64(payload, pos)
                pos += 8
            elif kind == OCTET:
                args[name] = payload[pos]
                pos += 1
            elif kind == LONGSTR:
                (n,) = _u32(payload, pos)
                raw = payload[pos + 4: pos + 4 + n]
                if len(raw) != n:
                    raise IndexError
                args[name] = bytes(raw)
                pos += 4 + n
            elif kind == TABLE:
                args[name], pos = decode_table(payload, pos)
    except AMQPError as exc:
        raise exc.with_method(*key) from None
    except Exception as exc:  # truncated fields; pamqp raises assorted types on bad tables
        # RabbitMQ answers undecodable method arguments with 501 FRAME_ERROR
        raise AMQPError(FRAME_ERROR, f"cannot decode {spec[0]} arguments "
                        f"({exc.__class__.__name__})", *key) from None
    return key, args


def encode_method(key: tuple[int, int], **values: Any) -> bytes:
    """Encode a method frame payload (not the frame around it)."""
    name, fields = METHODS[key]
    out = [_head.pack(*key)]
    bits = 0
    nbits = 0
    for fname, kind in fields:
        if kind == BIT:
            if nbits == 8:
                out.append(bytes((bits,)))
                bits = nbits = 0
            if values.get(fname):
                bits |= 1 << nbits
            nbits += 1
            continue
        if nbits:
            out.append(bytes((bits,)))
            bits = nbits = 0
        value = values.get(fname)
        if kind == SHORTSTR:
            raw = encode_str(value or "")
            if len(raw) > 255:
                raw = raw[:255]
            out.append(bytes((len(raw),)) + raw)
        elif kind == SHORT:
            out.append(struct.pack(">H", value or 0))
        elif kind == LONG:
            out.append(struct.pack(">I", value or 0))
        elif kind == LONGLONG or kind == TIMESTAMP:
            out.append(struct.pack(">Q", value or 0))
        elif kind == OCTET:
            out.append(bytes((value or 0,)))
        elif kind == LONGSTR:
            raw = value if isinstance(value, bytes) else encode_str(value or "")
            out.append(struct.pack(">I", len(raw)) + raw)
        elif kind == TABLE:
            out.append(encode_table(value))
    if nbits:
        out.append(bytes((bits,)))
    return b"".join(out)
