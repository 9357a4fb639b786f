"""The generic AMQP 0-9-1 method codec, on pamqp's method classes.

pamqp's command classes (pamqp.commands.Queue.Declare, ...) are the method
table: their ids, names, field names and field types. Handlers receive and
send instances of them. The bytes of each field are read and written here,
not by pamqp's own marshal/unmarshal, for two reasons a broker cannot give up:
names are binaries in RabbitMQ (any bytes must round-trip, so short strings
decode with surrogateescape), and field tables go through protocol.fieldtable,
which keeps every value and its wire type as it arrived.

basic.publish, basic.ack and basic.deliver, which every message walks through,
have hand-written codecs in protocol.fast and do not come here. Any malformed
payload raises AMQPError(FRAME_ERROR), as in RabbitMQ, never anything else.
"""

from __future__ import annotations

import struct
from typing import Any, TypeVar

from pamqp import base, commands

from .errors import FRAME_ERROR, AMQPError
from .fieldtable import decode_table, encode_table

Method = base.Frame
MethodKey = tuple[int, int]
M = TypeVar("M", bound=base.Frame)

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_head = struct.Struct(">HH")
_p16 = struct.Struct(">H").pack
_p32 = struct.Struct(">I").pack
_p64 = struct.Struct(">Q").pack

# (class id, method id) -> pamqp class, and the reverse
CLASSES: dict[MethodKey, type[base.Frame]] = {
    (index >> 16, index & 0xFFFF): cls for index, cls in commands.INDEX_MAPPING.items()}
KEYS: dict[type[base.Frame], MethodKey] = {cls: key for key, cls in CLASSES.items()}
# methods that carry content (a header and body frames follow them)
CONTENT_METHODS = frozenset({(60, 40), (60, 50), (60, 60), (60, 71)})

# per class, its fields as (attribute, AMQP type), read once from pamqp
_FIELDS: dict[type[base.Frame], tuple[tuple[str, str], ...]] = {
    cls: tuple((attr, cls.amqp_type(attr)) for attr in cls.attributes())
    for cls in CLASSES.values()}


def fields(cls: type[base.Frame]) -> tuple[tuple[str, str], ...]:
    """The (attribute, AMQP type) pairs of a method class, in wire order."""
    return _FIELDS[cls]


def key_of(method: base.Frame | type[base.Frame]) -> MethodKey:
    return KEYS[method if isinstance(method, type) else type(method)]


def name_of(key: MethodKey) -> str:
    """RabbitMQ's lower-case name of a method: 'queue.declare', 'basic.get-ok'."""
    cls = CLASSES.get(key)
    if cls is None:
        return f"{key[0]}.{key[1]}"
    klass, _, method = cls.name.partition(".")
    dashed = "".join("-" + c.lower() if c.isupper() and i else c.lower()
                     for i, c in enumerate(method))
    return f"{klass.lower()}.{dashed}"


def decode_str(raw: bytes) -> str:
    # RabbitMQ treats names as binaries; surrogateescape round-trips any bytes.
    return raw.decode("utf-8", "surrogateescape")


def encode_str(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def decode_method(payload: bytes) -> tuple[MethodKey, base.Frame]:
    """A method frame payload -> ((class id, method id), the pamqp method object)."""
    if len(payload) < 4:
        raise AMQPError(FRAME_ERROR, "method frame too short")
    key: MethodKey = _head.unpack_from(payload, 0)
    cls = CLASSES.get(key)
    if cls is None:
        raise AMQPError(FRAME_ERROR, f"unknown method {key[0]}.{key[1]}", *key)
    method = cls.__new__(cls)
    pos = 4
    bit = 0
    bits = 0
    try:
        for name, kind in _FIELDS[cls]:
            value: Any
            if kind == "bit":
                if bit == 0 or bit == 8:
                    bits = payload[pos]
                    pos += 1
                    bit = 0
                setattr(method, name, bool(bits & (1 << bit)))
                bit += 1
                continue
            bit = 0
            if kind == "shortstr":
                n = payload[pos]
                raw = payload[pos + 1: pos + 1 + n]
                if len(raw) != n:
                    raise IndexError
                value = decode_str(raw)
                pos += 1 + n
            elif kind == "short":
                (value,) = _u16(payload, pos)
                pos += 2
            elif kind == "long":
                (value,) = _u32(payload, pos)
                pos += 4
            elif kind == "longlong" or kind == "timestamp":
                (value,) = _u64(payload, pos)
                pos += 8
            elif kind == "octet":
                value = payload[pos]
                pos += 1
            elif kind == "longstr":
                (n,) = _u32(payload, pos)
                value = bytes(payload[pos + 4: pos + 4 + n])
                if len(value) != n:
                    raise IndexError
                pos += 4 + n
            elif kind == "table":
                value, pos = decode_table(payload, pos)
            else:  # pragma: no cover - pamqp's 0-9-1 classes use only the types above
                raise ValueError(f"field type {kind}")
            setattr(method, name, value)
    except AMQPError as exc:
        raise exc.with_method(*key) from None
    except (IndexError, ValueError, struct.error) as exc:
        # RabbitMQ answers undecodable method arguments with 501 FRAME_ERROR
        raise AMQPError(FRAME_ERROR, f"cannot decode {name_of(key)} arguments "
                        f"({exc.__class__.__name__})", *key) from None
    return key, method


def encode_method(method: base.Frame) -> bytes:
    """A method frame payload (not the frame around it) for a pamqp method object."""
    cls = type(method)
    out = [_head.pack(*KEYS[cls])]
    bits = 0
    nbits = 0
    for name, kind in _FIELDS[cls]:
        value = getattr(method, name, None)
        if kind == "bit":
            if nbits == 8:
                out.append(bytes((bits,)))
                bits = nbits = 0
            if value:
                bits |= 1 << nbits
            nbits += 1
            continue
        if nbits:
            out.append(bytes((bits,)))
            bits = nbits = 0
        if kind == "shortstr":
            raw = value if isinstance(value, bytes) else encode_str(value or "")
            out.append(bytes((min(len(raw), 255),)) + raw[:255])
        elif kind == "short":
            out.append(_p16(value or 0))
        elif kind == "long":
            out.append(_p32(value or 0))
        elif kind == "longlong" or kind == "timestamp":
            out.append(_p64(value or 0))
        elif kind == "octet":
            out.append(bytes((value or 0,)))
        elif kind == "longstr":
            raw = value if isinstance(value, bytes) else encode_str(value or "")
            out.append(_p32(len(raw)) + raw)
        elif kind == "table":
            out.append(encode_table(value))
    if nbits:
        out.append(bytes((bits,)))
    return b"".join(out)


def make(cls: type[M], **values: Any) -> M:
    """An instance of a method class without pamqp's constructor checks (which refuse
    some names RabbitMQ accepts, e.g. binary queue names): the fields given, the
    others zero, empty or false."""
    method = cls.__new__(cls)
    for name, kind in _FIELDS[cls]:
        if name in values:
            setattr(method, name, values.pop(name))
        else:
            setattr(method, name, _ZERO[kind])
    if values:
        raise TypeError(f"{cls.name} has no field {next(iter(values))!r}")
    return method


_ZERO: dict[str, Any] = {"bit": False, "shortstr": "", "longstr": b"", "short": 0, "long": 0,
                         "longlong": 0, "timestamp": 0, "octet": 0, "table": None}
