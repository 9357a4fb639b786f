"""Erlang's portable term hash, erlang:phash2/2, for the terms binding arguments make.

RabbitMQ's management API names a binding with arguments by a hash of them
(rabbit_mgmt_format:args_hash: phash2 of the argument table as an Erlang term, 32
bits, URL-safe base64), so the `properties_key` of a binding is the same here as there.
phash2 is documented as stable across Erlang releases. The algorithm: Bob Jenkins'
96-bit mix over 32-bit words, a constant per kind of term (multiples of the golden
ratio), binaries hashed a block of 12 bytes at a time, atoms by their name's PJW
hash, lists of small integers four at a time, tuples and lists element by element
(an explicit stack, head before tail).

Terms are Python values: `Atom` for atoms, bytes for binaries, int, float, tuple, list.
`table_term` turns an AMQP argument table as this broker keeps it into the term
RabbitMQ keeps ({Key, Type, Value} rows, sorted by key).
"""

from __future__ import annotations

import struct
from typing import Any

MASK = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # HCONST; the constant of each kind is GOLDEN * n mod 2**32
EMPTY_LIST = 3468870702  # the hash of [] at the top of a term
NIL_WORD = 2  # what [] contributes inside a term
_double = struct.Struct("<d")
_u64 = struct.Struct("<Q")


def _const(n: int) -> int:
    return (GOLDEN * n) & MASK


INT, LIST_BYTES, NIL, ATOM, BIG_NEG, BIG_POS, FLOAT, BINARY, TUPLE = (
    GOLDEN, _const(4), _const(2), _const(3), _const(10), _const(11), _const(12), _const(13),
    _const(9))


class Atom(str):
    """An Erlang atom (its name)."""

    __slots__ = ()


def _words(data: bytes, at: int) -> tuple[int, int, int]:
    return (int.from_bytes(data[at:at + 4], "little"),
            int.from_bytes(data[at + 4:at + 8], "little"),
            int.from_bytes(data[at + 8:at + 12], "little"))


def _block_hash(data: bytes, initial: int) -> int:
    a = b = GOLDEN
    c = initial & MASK
    full = len(data) - len(data) % 12
    for at in range(0, full, 12):
        x, y, z = _words(data, at)
        a, b, c = (a + x) & MASK, (b + y) & MASK, (c + z) & MASK
        a, b, c = _mix_all(a, b, c)
    # the last bytes: up to 11, the length in the low byte of the third word
    x, y, z = _words(data[full:] + bytes(12), 0)
    a, b = (a + x) & MASK, (b + y) & MASK
    c = (c + len(data) + ((z & 0xFFFFFF) << 8)) & MASK
    return _mix_all(a, b, c)[2]


def _mix_all(a: int, b: int, c: int) -> tuple[int, int, int]:
    """Jenkins' mix of three 32-bit words."""
    a = (a - b - c) & MASK ^ (c >> 13)
    b = (b - c - a) & MASK ^ ((a << 8) & MASK)
    c = (c - a - b) & MASK ^ (b >> 13)
    a = (a - b - c) & MASK ^ (c >> 12)
    b = (b - c - a) & MASK ^ ((a << 16) & MASK)
    c = (c - a - b) & MASK ^ (b >> 5)
    a = (a - b - c) & MASK ^ (c >> 3)
    b = (b - c - a) & MASK ^ ((a << 10) & MASK)
    c = (c - a - b) & MASK ^ (b >> 15)
    return a, b, c


def _atom_hash(name: str) -> int:
    """The hash the atom table keeps for an atom (PJW over its latin-1 name)."""
    h = 0
    for octet in name.encode("latin-1", "replace"):
        h = ((h << 4) + octet) & MASK
        high = h & 0xF0000000
        if high:
            h ^= high >> 24
            h ^= high
    return h


def _is_byte(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def phash2(term: Any) -> int:
    """erlang:phash2(Term, 1 bsl 32)."""
    h = 0

    def word(x: int, y: int, const: int) -> None:
        nonlocal h
        h = _mix_all((const + x) & MASK, (const + y) & MASK, h)[2]

    stack: list[Any] = [term]
    while stack:
        t = stack.pop()
        if isinstance(t, Atom):
            value = _atom_hash(t)
            if h == 0:
                h = value
            else:
                word(value, 0, ATOM)
        elif isinstance(t, bool):
            stack.append(Atom("true" if t else "false"))
        elif isinstance(t, int):
            if -(1 << 27) <= t < (1 << 27):
                if t < 0:
                    word(-t, 0, INT)  # negative numbers are mixed twice, as Erlang does
                word(t & MASK, 0, INT)
            else:
                magnitude = -t if t < 0 else t
                digits: list[int] = []
                while magnitude:
                    digits.append(magnitude & MASK)
                    magnitude >>= 32
                const = BIG_NEG if t < 0 else BIG_POS
                for i in range(0, len(digits), 2):
                    word(digits[i], digits[i + 1] if i + 1 < len(digits) else 0, const)
        elif isinstance(t, float):
            bits = _u64.unpack(_double.pack(t))[0]
            word(bits >> 32, bits & MASK, FLOAT)
        elif isinstance(t, (bytes, bytearray)):
            start = (BINARY + h) & MASK
            h = _block_hash(bytes(t), start) if t else start
        elif isinstance(t, tuple):
            word(len(t), 0, TUPLE)
            stack.extend(reversed(t[1:]))
            if t:
                stack.append(t[0])
        elif isinstance(t, list):
            if not t:
                if h == 0:
                    h = EMPTY_LIST
                else:
                    word(NIL_WORD, 0, NIL)
                continue
            i = count = packed = 0
            while i < len(t) and _is_byte(t[i]):  # small integers four at a time
                packed = ((packed << 8) + t[i]) & MASK
                if count == 3:
                    word(packed, 0, LIST_BYTES)
                    count = packed = 0
                else:
                    count += 1
                i += 1
            if count:
                word(packed, 0, LIST_BYTES)
            if i < len(t):
                stack.append(t[i + 1:])  # the tail comes after the head
                stack.append(t[i])
            else:
                stack.append([])
        else:
            raise TypeError(f"no Erlang term for {type(t).__name__}")
    return h


def value_term(value: Any) -> tuple[Atom, Any]:
    """(type, value) of one AMQP table value, as rabbit_misc:to_amqp_table types JSON."""
    if isinstance(value, bool):
        return Atom("bool"), Atom("true" if value else "false")
    if isinstance(value, int):
        return Atom("long"), int(value)
    if isinstance(value, float):
        return Atom("double"), float(value)
    if isinstance(value, str):
        return Atom("longstr"), value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray)):
        return Atom("longstr"), bytes(value)
    if isinstance(value, dict):
        return Atom("table"), table_term(value)
    if isinstance(value, (list, tuple)):
        return Atom("array"), [value_term(v) for v in value]
    if value is None:
        return Atom("void"), Atom("undefined")
    return Atom("longstr"), str(value).encode("utf-8", "surrogateescape")


def table_term(table: dict[str, Any]) -> list[tuple[bytes, Atom, Any]]:
    """An argument table as RabbitMQ keeps it: [{Key, Type, Value}] sorted by key."""
    rows = []
    for key in sorted(table, key=lambda k: str(k).encode("utf-8", "surrogateescape")):
        kind, value = value_term(table[key])
        rows.append((str(key).encode("utf-8", "surrogateescape"), kind, value))
    return rows
