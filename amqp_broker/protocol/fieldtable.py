"""AMQP field tables, losslessly: decode_table / encode_table / skip_table.

pamqp's table codec turns timestamps into datetimes (and fails on ones past year
9999) and re-encodes integers with types of its own choosing; a broker must hand
tables on unchanged, so tables have this codec of their own, used by the method
codec (protocol.codec) and the content-header helpers (protocol.fast). Malformed
tables raise AMQPError(FRAME_ERROR), as RabbitMQ does, never anything else.
"""

from __future__ import annotations

import calendar
import datetime
import decimal
import struct
import time
from typing import Any, ClassVar

from .errors import FRAME_ERROR, AMQPError

_u8 = struct.Struct(">B").unpack_from
_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_u64_pack = struct.Struct(">Q").pack
_head = struct.Struct(">HH")


def decode_str(raw: bytes) -> str:
    # RabbitMQ treats names as binaries; surrogateescape round-trips any bytes.
    return raw.decode("utf-8", "surrogateescape")


def encode_str(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


# --- field tables ----------------------------------------------------------------------
# RabbitMQ keeps field values as opaque typed values: a timestamp is a 64-bit number with
# no unit (clients send seconds, milliseconds, 2**62, ...), a string is a byte string. So
# decoding never fails on a well-formed value, and decoding with typed=True keeps each
# number's wire type, so that re-encoding what was decoded gives back the same bytes
# (dead-lettering re-encodes message headers).

class FieldInt(int):
    """An integer field value that re-encodes with the wire type it arrived with."""

    __slots__ = ()
    tag: ClassVar[bytes] = b"l"
    packer: ClassVar[struct.Struct] = struct.Struct(">q")

    def encode(self) -> bytes:
        try:
            return self.tag + self.packer.pack(self)
        except struct.error:
            raise TypeError(f"{int(self)} does not fit field type {self.tag!r}") from None


class ShortShortInt(FieldInt):
    __slots__ = ()
    tag, packer = b"b", struct.Struct(">b")


class ShortShortUint(FieldInt):
    __slots__ = ()
    tag, packer = b"B", struct.Struct(">B")


class ShortInt(FieldInt):
    __slots__ = ()
    tag, packer = b"s", struct.Struct(">h")


class ShortUint(FieldInt):
    __slots__ = ()
    tag, packer = b"u", struct.Struct(">H")


class LongInt(FieldInt):
    __slots__ = ()
    tag, packer = b"I", struct.Struct(">i")


class LongUint(FieldInt):
    __slots__ = ()
    tag, packer = b"i", struct.Struct(">I")


class LongLongInt(FieldInt):
    __slots__ = ()
    tag, packer = b"l", struct.Struct(">q")


class SpecLongLongInt(FieldInt):
    """'L': the AMQP 0-9-1 spec's letter for a signed 64-bit integer (RabbitMQ uses 'l')."""

    __slots__ = ()
    tag, packer = b"L", struct.Struct(">q")


class Timestamp(FieldInt):
    """A timestamp: an unsigned 64-bit number, kept as is. No unit is assumed and it is
    never turned into a date, so every value (0, 2**62, 2**64 - 1) survives."""

    __slots__ = ()
    tag, packer = b"T", struct.Struct(">Q")

    def encode(self) -> bytes:
        return b"T" + timestamp_bytes(self)


class Float32(float):
    """A single-precision ('f') field value; plain floats encode as doubles ('d')."""

    __slots__ = ()


_INT_TYPES: dict[int, type[FieldInt]] = {
    cls.tag[0]: cls for cls in (ShortShortInt, ShortShortUint, ShortInt, ShortUint, LongInt,
                                LongUint, LongLongInt, SpecLongLongInt, Timestamp)}
_f32 = struct.Struct(">f")
_f64 = struct.Struct(">d")
_dec = struct.Struct(">Bi")
_p32 = struct.Struct(">I").pack
# fixed-size field types: tag -> bytes after the tag
_SIZES = {tag: cls.packer.size for tag, cls in _INT_TYPES.items()}
_SIZES.update({ord("t"): 1, ord("f"): 4, ord("d"): 8, ord("D"): 5, ord("V"): 0})
_S, _X, _F, _A = ord("S"), ord("x"), ord("F"), ord("A")


class TableError(ValueError):
    """Bytes that are not a well-formed field table."""


def decode_table(data: bytes, offset: int, typed: bool = False) -> tuple[dict[str, Any], int]:
    """The field table at offset -> (table, offset past it); AMQPError(FRAME_ERROR) if malformed.

    Strings decode as str when they are UTF-8, else bytes; 'x' byte arrays as bytearray;
    timestamps as Timestamp. typed=True also decodes every other number as a FieldInt or
    Float32 subclass that remembers its wire type (for tables that are re-encoded);
    otherwise they are plain ints and floats (for tables that are only read).
    """
    try:
        return _table(data, offset, len(data), typed)
    except (IndexError, ValueError, struct.error, decimal.InvalidOperation) as exc:
        raise AMQPError(FRAME_ERROR, f"malformed field table ({exc})") from None


def _table(data: bytes, pos: int, end: int, typed: bool) -> tuple[dict[str, Any], int]:
    (size,) = _u32(data, pos)
    pos += 4
    stop = pos + size
    if stop > end:
        raise TableError("field table runs past its end")
    table: dict[str, Any] = {}
    while pos < stop:
        n = data[pos]
        key = data[pos + 1: pos + 1 + n]
        pos += 1 + n
        if pos >= stop:
            raise TableError("field name without a value")
        table[key.decode("utf-8", "surrogateescape")], pos = _value(data, pos, stop, typed)
    return table, stop


def _value(data: bytes, pos: int, end: int, typed: bool) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    value: Any
    kind = _INT_TYPES.get(tag)
    if kind is not None:
        (value,) = kind.packer.unpack_from(data, pos)
        pos += kind.packer.size
        if typed or kind is Timestamp:
            value = kind(value)
    elif tag == _S or tag == _X:
        (n,) = _u32(data, pos)
        raw = data[pos + 4: pos + 4 + n]
        pos += 4 + n
        if tag == _X:
            value = bytearray(raw)
        else:
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                value = bytes(raw)
    elif tag == _F:
        return _table(data, pos, end, typed)
    elif tag == _A:
        (n,) = _u32(data, pos)
        pos += 4
        stop = pos + n
        if stop > end:
            raise TableError("field array runs past its end")
        value = []
        while pos < stop:
            item, pos = _value(data, pos, stop, typed)
            value.append(item)
    elif tag == 0x74:  # t
        value = data[pos] != 0
        pos += 1
    elif tag == 0x64:  # d
        (value,) = _f64.unpack_from(data, pos)
        pos += 8
    elif tag == 0x66:  # f
        (value,) = _f32.unpack_from(data, pos)
        pos += 4
        if typed:
            value = Float32(value)
    elif tag == 0x44:  # D
        scale, mantissa = _dec.unpack_from(data, pos)
        pos += 5
        value = decimal.Decimal(mantissa).scaleb(-scale)
    elif tag == 0x56:  # V
        value = None
    else:
        raise TableError(f"unknown field type {bytes((tag,))!r}")
    if pos > end:
        raise TableError("field value runs past its table")
    return value, pos


def skip_table(data: bytes, pos: int, end: int | None = None) -> int:
    """Check the field table at pos without decoding it; the offset past it.

    Raises TableError (or IndexError, struct.error) when it is not well formed."""
    size: int
    (size,) = _u32(data, pos)
    pos += 4
    stop = pos + size
    if stop > (len(data) if end is None else end):
        raise TableError("field table runs past its end")
    while pos < stop:
        pos += 1 + data[pos]
        if pos >= stop:
            raise TableError("field name without a value")
        pos = _skip_value(data, pos, stop)
    return stop


def _skip_value(data: bytes, pos: int, end: int) -> int:
    tag = data[pos]
    size = _SIZES.get(tag)
    if size is not None:
        pos += 1 + size
    elif tag == _S or tag == _X:
        pos += 5 + _u32(data, pos + 1)[0]
    elif tag == _F:
        pos = skip_table(data, pos + 1, end)
    elif tag == _A:
        stop = pos + 5 + _u32(data, pos + 1)[0]
        if stop > end:
            raise TableError("field array runs past its end")
        pos += 5
        while pos < stop:
            pos = _skip_value(data, pos, stop)
    else:
        raise TableError(f"unknown field type {bytes((tag,))!r}")
    if pos > end:
        raise TableError("field value runs past its table")
    return pos


def encode_table(table: dict[str, Any] | None) -> bytes:
    """A field table, keys in the dict's order. Raises TypeError for unencodable values."""
    if not table:
        return b"\x00\x00\x00\x00"
    parts = []
    for key, value in table.items():
        raw = key.encode("utf-8", "surrogateescape")
        if len(raw) > 255:
            raise TypeError(f"field name longer than 255 bytes: {key[:40]!r}...")
        parts.append(bytes((len(raw),)) + raw)
        parts.append(encode_value(value))
    body = b"".join(parts)
    return _p32(len(body)) + body


def encode_value(value: Any) -> bytes:
    """One field value with its type tag. Values decoded with typed=True keep their tag;
    plain ints take the smallest integer type (as pamqp), plain floats a double."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        return b"S" + _p32(len(raw)) + raw
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, FieldInt):
        return value.encode()
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, bytes):
        return b"S" + _p32(len(value)) + value
    if isinstance(value, bytearray):
        return b"x" + _p32(len(value)) + value
    if isinstance(value, dict):
        return b"F" + encode_table(value)
    if isinstance(value, Float32):
        return b"f" + _f32.pack(value)
    if isinstance(value, float):
        return b"d" + _f64.pack(value)
    if isinstance(value, decimal.Decimal):
        return b"D" + _decimal(value)
    if isinstance(value, (datetime.datetime, time.struct_time)):
        return b"T" + timestamp_bytes(value)
    if isinstance(value, (list, tuple)):
        body = b"".join(encode_value(v) for v in value)
        return b"A" + _p32(len(body)) + body
    if value is None:
        return b"V"
    raise TypeError(f"cannot encode a {type(value).__name__} in a field table")


def timestamp_bytes(value: int | datetime.datetime | time.struct_time) -> bytes:
    """The 8 bytes of a timestamp: an int as is (negative ones as their two's complement),
    a datetime or struct_time as whole seconds since the epoch (naive datetimes are UTC)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = int(value.timestamp())
    elif isinstance(value, time.struct_time):
        value = calendar.timegm(value)
    if not -(1 << 63) <= value < (1 << 64):
        raise TypeError(f"timestamp {value} does not fit 64 bits")
    return _u64_pack(value & 0xFFFF_FFFF_FFFF_FFFF)


def _integer(value: int) -> bytes:
    if -128 <= value <= 127:
        return b"b" + struct.pack(">b", value)
    if -32768 <= value <= 32767:
        return b"s" + struct.pack(">h", value)
    if 0 <= value <= 65535:
        return b"u" + struct.pack(">H", value)
    if -(1 << 31) <= value < (1 << 31):
        return b"I" + struct.pack(">i", value)
    if 0 <= value < (1 << 32):
        return b"i" + struct.pack(">I", value)
    if -(1 << 63) <= value < (1 << 63):
        return b"l" + struct.pack(">q", value)
    raise TypeError(f"integer {value} does not fit a field table")


def _decimal(value: decimal.Decimal) -> bytes:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise TypeError(f"cannot encode decimal {value}")
    if exponent > 0:
        scale, mantissa = 0, int(value)
    else:
        scale, mantissa = -exponent, int(value.scaleb(-exponent))
    if scale > 255 or not -(1 << 31) <= mantissa < (1 << 31):
        raise TypeError(f"decimal {value} does not fit a field table")
    return _dec.pack(scale, mantissa)
