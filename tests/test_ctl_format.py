"""Tables and values of `amqp-broker ctl` (amqp_broker/ctl_format.py)."""

from __future__ import annotations

from typing import Any

import pytest

from amqp_broker import ctl_format as fmt


@pytest.mark.parametrize(("value", "text"), [
    (None, ""), (fmt.MISSING, ""), (True, "true"), (False, "false"), (0, "0"), (1.5, "1.5"),
    ("plain", "plain"), ("", ""), (["a", "b"], "a,b"), ([], ""), ({}, ""),
    ({"b": 1, "a": "x"}, '{"a":"x","b":1}'), ("tab\there", "tab\\there"),
    ("new\nline", "new\\nline"), ("bell\x07", "bell\\x07"), ("héllo ünïcode", "héllo ünïcode"),
])
def test_cell(value: Any, text: str) -> None:
    assert fmt.cell(value) == text


def test_pick() -> None:
    row = {"a": {"b": {"c": 3}}, "n": None}
    assert fmt.pick(row, "a.b.c") == 3
    assert fmt.pick(row, "n") is None
    assert fmt.pick(row, "a.x") is fmt.MISSING
    assert fmt.pick(row, "a.b.c.d") is fmt.MISSING
    assert fmt.pick({"a": [1]}, "a.0") is fmt.MISSING


def test_table_aligns_and_right_aligns_numbers() -> None:
    rows = [{"name": "q1", "n": 5, "on": True}, {"name": "longer", "n": 1234, "on": False},
            {"name": "x"}]
    assert fmt.table(rows, [("name", "name"), ("messages", "n"), ("durable", "on")]) == (
        "name    messages  durable\n"
        "q1             5  true\n"
        "longer      1234  false\n"
        "x\n")


def test_table_header_only() -> None:
    assert fmt.table([], [("name", "name"), ("vhost", "vhost")]) == "name  vhost\n"


def test_table_mixed_column_is_left_aligned() -> None:
    rows = [{"v": 10}, {"v": "text"}]
    assert fmt.table(rows, [("v", "v")]) == "v\n10\ntext\n"


def test_table_nested_paths() -> None:
    rows = [{"queue": {"name": "q", "vhost": "/"}}]
    assert fmt.table(rows, [("vhost", "queue.vhost"), ("queue", "queue.name")]) == (
        "vhost  queue\n/      q\n")


def test_pairs() -> None:
    assert fmt.pairs([("a", "1"), ("longer", "2"), ("empty", "")]) == (
        "a       1\nlonger  2\nempty\n")
    assert fmt.pairs([]) == ""


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (512, "512 B"), (2048, "2.0 KiB"), (150 * 2**20, "150.0 MiB"),
    (3 * 2**30 + 2**29, "3.5 GiB"), (5 * 2**50, "5120.0 TiB"), (None, "?"), ("x", "?"),
])
def test_size(n: Any, text: str) -> None:
    assert fmt.size(n) == text


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0s"), (59_999, "59s"), (61_000, "1m 1s"), (3_600_000, "1h 0m 0s"),
    (90_061_000, "1d 1h 1m 1s"), (None, "?"),
])
def test_duration(ms: Any, text: str) -> None:
    assert fmt.duration(ms) == text
