"""Unit tests for the exchange types (exchanges/): binding bookkeeping and routing."""

from __future__ import annotations

import random
from collections.abc import Hashable
from functools import cache
from typing import Any

import pytest

from amqp_broker import exchanges
from amqp_broker.exchanges.base import BindingError, ExchangeType
from amqp_broker.exchanges.direct import DirectExchange
from amqp_broker.exchanges.fanout import FanoutExchange
from amqp_broker.exchanges.headers import HeadersExchange
from amqp_broker.exchanges.topic import CACHE_SIZE, TopicExchange, split_words

ALL_TYPES = [DirectExchange, FanoutExchange, TopicExchange, HeadersExchange]
# the types that take no declare arguments (x-delayed-message: tests/test_delayed.py)
ALL_TYPES_BY_NAME = {cls.type_name: cls for cls in ALL_TYPES}


def routed(exchange: ExchangeType, key: str = "", headers: dict[str, Any] | None = None
           ) -> list[Hashable]:
    """route() as a sorted list, checking that no destination comes twice."""
    result = list(exchange.route(key, headers))
    assert len(result) == len(set(result)), result
    return sorted(result, key=repr)


# ---------------------------------------------------------------- registry and protocol

def test_registry_maps_type_names() -> None:
    assert {name: exchanges.TYPES[name] for name in ALL_TYPES_BY_NAME} == {
        "direct": DirectExchange, "fanout": FanoutExchange, "topic": TopicExchange,
        "headers": HeadersExchange}
    assert exchanges.TYPES["x-delayed-message"] is exchanges.DelayedExchange
    for name, cls in ALL_TYPES_BY_NAME.items():
        exchange = exchanges.create(name)
        assert isinstance(exchange, cls)
        assert exchange.type_name == name
        assert exchange.needs_headers == (name == "headers")
        assert not exchange.has_bindings()
    with pytest.raises(KeyError):
        exchanges.create("x-consistent-hash")


def test_classes_satisfy_protocol() -> None:
    # Checked by mypy: each assignment must type-check against the protocol.
    direct: ExchangeType = DirectExchange()
    fanout: ExchangeType = FanoutExchange()
    topic: ExchangeType = TopicExchange()
    headers: ExchangeType = HeadersExchange()
    assert {direct.type_name, fanout.type_name, topic.type_name, headers.type_name} == {
        "direct", "fanout", "topic", "headers"}


# ---------------------------------------------------------------- bookkeeping, every type

@pytest.mark.parametrize("cls", ALL_TYPES)
def test_bind_unbind_idempotent(cls: type[ExchangeType]) -> None:
    exchange = cls()
    assert exchange.bind("q1", "k", {}) is True
    assert exchange.bind("q1", "k", {}) is False
    assert exchange.has_bindings()
    assert exchange.unbind("q1", "k", {}) is True
    assert exchange.unbind("q1", "k", {}) is False
    assert exchange.unbind("never", "k", {}) is False
    assert not exchange.has_bindings()
    assert list(exchange.bindings()) == []


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_binding_identity_includes_arguments(cls: type[ExchangeType]) -> None:
    exchange = cls()
    assert exchange.bind("q", "k", {"a": 1})
    assert exchange.bind("q", "k", {"a": 2})  # same key, other arguments: a second binding
    assert exchange.bind("q", "k", {"a": True})  # True is not 1 in an AMQP table
    assert exchange.bind("q", "k2", {"a": 1})  # other key: another binding
    assert not exchange.bind("q", "k", {"a": 1})
    # Field-table order does not make a different binding.
    assert exchange.bind("q", "k", {"b": 1, "c": [1, {"d": "e"}]})
    assert not exchange.bind("q", "k", {"c": [1, {"d": "e"}], "b": 1})
    assert len(list(exchange.bindings())) == 5
    assert exchange.unbind("q", "k", {"a": 2})
    assert not exchange.unbind("q", "k", {"a": 2})
    assert len(list(exchange.bindings())) == 4


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_bindings_lists_copies(cls: type[ExchangeType]) -> None:
    exchange = cls()
    args = {"x-match": "any", "h": "v"}
    exchange.bind("q1", "a", args)
    exchange.bind("q2", "b", {})
    args["h"] = "changed after bind"  # the caller reusing its dict must not matter
    listed = sorted(exchange.bindings(), key=repr)
    assert listed == [("q1", "a", {"x-match": "any", "h": "v"}), ("q2", "b", {})]
    listed[0][2]["h"] = "mutated"
    assert ("q1", "a", {"x-match": "any", "h": "v"}) in list(exchange.bindings())
    assert exchange.unbind("q1", "a", {"h": "v", "x-match": "any"})


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_unbind_destination(cls: type[ExchangeType]) -> None:
    exchange = cls()
    for key in ("a", "b", "a.b"):
        exchange.bind("q1", key, {})
    exchange.bind("q1", "a", {"extra": 1})
    exchange.bind("q2", "a", {})
    removed = exchange.unbind_destination("q1")
    assert sorted((key, sorted(args.items())) for key, args in removed) == [
        ("a", []), ("a", [("extra", 1)]), ("a.b", []), ("b", [])]
    assert exchange.unbind_destination("q1") == []
    assert exchange.unbind_destination("unknown") == []
    assert list(exchange.bindings()) == [("q2", "a", {})]
    assert "q1" not in routed(exchange, "a", {})
    assert exchange.unbind_destination("q2") == [("a", {})]
    assert not exchange.has_bindings()
    assert routed(exchange, "a", {}) == []


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_destinations_may_be_any_hashable(cls: type[ExchangeType]) -> None:
    class Queue:  # identity-hashed, like the broker's queue objects
        pass

    q1, q2 = Queue(), Queue()
    exchange = cls()
    exchange.bind(q1, "k", {})
    exchange.bind(q2, "k", {})
    exchange.bind(("exchange", "amq.topic"), "k", {})
    assert set(exchange.route("k", {})) == {q1, q2, ("exchange", "amq.topic")}


# ---------------------------------------------------------------- direct

def test_direct_routes_exact_key_once() -> None:
    exchange = DirectExchange()
    exchange.bind("q1", "a", {})
    exchange.bind("q1", "a", {"other": "args"})
    exchange.bind("q2", "a", {})
    exchange.bind("q3", "b", {})
    exchange.bind("q4", "", {})
    assert routed(exchange, "a") == ["q1", "q2"]
    assert routed(exchange, "b") == ["q3"]
    assert routed(exchange, "") == ["q4"]
    assert routed(exchange, "A") == []
    assert routed(exchange, "a.b") == []
    # One of two bindings from q1 with key "a" leaves q1 still bound.
    exchange.unbind("q1", "a", {})
    assert routed(exchange, "a") == ["q1", "q2"]
    exchange.unbind("q1", "a", {"other": "args"})
    assert routed(exchange, "a") == ["q2"]


def test_direct_route_result_is_a_stable_snapshot() -> None:
    exchange = DirectExchange()
    exchange.bind("q1", "a", {})
    first = exchange.route("a", None)
    assert isinstance(first, tuple)
    assert exchange.route("a", None) is first  # no allocation per message
    exchange.bind("q2", "a", {})
    assert first == ("q1",)  # earlier results are not mutated by later binds
    assert sorted(exchange.route("a", None), key=repr) == ["q1", "q2"]


# ---------------------------------------------------------------- fanout

def test_fanout_ignores_key_and_dedupes() -> None:
    exchange = FanoutExchange()
    assert routed(exchange, "x") == []
    exchange.bind("q1", "a", {})
    exchange.bind("q1", "b", {})
    exchange.bind("q2", "", {"x": 1})
    assert routed(exchange, "anything") == ["q1", "q2"]
    assert routed(exchange, "") == ["q1", "q2"]
    exchange.unbind("q1", "a", {})
    assert routed(exchange, "z") == ["q1", "q2"]
    exchange.unbind("q1", "b", {})
    assert routed(exchange, "z") == ["q2"]
    snapshot = exchange.route("z", None)
    exchange.bind("q3", "", {})
    assert list(snapshot) == ["q2"]


# ---------------------------------------------------------------- topic

# (binding pattern, routing key, matches?) from RabbitMQ's topic semantics: keys split on
# every '.', "" is zero words, '*' is exactly one (possibly empty) word, '#' zero or more.
TOPIC_CASES: list[tuple[str, str, bool]] = [
    # literal patterns
    ("a.b.c", "a.b.c", True),
    ("a.b.c", "a.b", False),
    ("a.b", "a.b.c", False),
    ("a", "", False),
    ("", "", True),
    ("", "a", False),
    ("", ".", False),
    # empty words
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    ("a.b", "a..b", False),
    (".a", ".a", True),
    (".a", "a", False),
    ("a.", "a.", True),
    ("a.", "a", False),
    (".", ".", True),
    # '*' is exactly one word
    ("*", "a", True),
    ("*", "", False),
    ("*", "a.b", False),
    ("*", ".", False),
    ("*.*", ".", True),
    ("a.*.b", "a.x.b", True),
    ("a.*.b", "a..b", True),
    ("a.*.b", "a.b", False),
    ("*.a", ".a", True),
    ("a.*", "a.", True),
    ("a.*", "a", False),
    # '#' is zero or more words
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("a.#", "", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "a.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.b", "b.a.b", False),
    ("#.", "", False),
    ("#.", ".", True),
    ("#.", "a.", True),
    ("#.", "a", False),
    # '*' and '#' together
    ("*.#", "", False),
    ("*.#", "a", True),
    ("*.#", "a.b.c", True),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("#.*", "a.b", True),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("#.#.#.#", "x", True),
    ("*.*.#", "a", False),
    ("*.*.#", "a.b", True),
    ("#.*.#", "a", True),
    ("#.*.#", "", False),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
    ("*.#.*", "a.b.c.d", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.#.#.b", "a.b", True),
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y", True),
    ("#.a.#", "x.b.y", False),
    ("#.b.#.c", "a.b.x.y.c", True),
    ("#.b.#.c", "a.c.x.b", False),
    ("#.a.#.b.#.c.#", "x.a.y.b.z.c.w", True),
    ("#.a.#.b.#.c.#", "x.c.y.b.z.a.w", False),
    # wildcards in a routing key are plain words
    ("*", "*", True),
    ("#", "#", True),
    ("a.b", "a.*", False),
    ("a.*", "a.*", True),
    ("a.#", "a.#", True),
    ("a.b.#", "a.#", False),
    # the tutorial's examples
    ("*.orange.*", "quick.orange.rabbit", True),
    ("*.*.rabbit", "quick.orange.rabbit", True),
    ("*.orange.*", "lazy.orange.elephant", True),
    ("lazy.#", "lazy.orange.elephant", True),
    ("*.orange.*", "quick.orange.fox", True),
    ("*.*.rabbit", "quick.brown.fox", False),
    ("lazy.#", "lazy.brown.fox", True),
    ("*.*.rabbit", "lazy.pink.rabbit", True),
    ("*.orange.*", "orange", False),
    ("*.orange.*", "quick.orange.male.rabbit", False),
    ("lazy.#", "lazy.orange.male.rabbit", True),
]


def reference_match(pattern: str, key: str) -> bool:
    """Word-by-word definition of a topic match (exponential without the cache)."""
    p_words, k_words = tuple(split_words(pattern)), tuple(split_words(key))

    @cache
    def match(p: int, k: int) -> bool:
        if p == len(p_words):
            return k == len(k_words)
        word = p_words[p]
        if word == "#":
            return match(p + 1, k) or (k < len(k_words) and match(p, k + 1))
        if k == len(k_words):
            return False
        return (word == "*" or word == k_words[k]) and match(p + 1, k + 1)

    return match(0, 0)


def test_topic_table_has_enough_cases() -> None:
    assert len(TOPIC_CASES) >= 40
    assert len({(p, k) for p, k, _ in TOPIC_CASES}) == len(TOPIC_CASES)


def test_split_words() -> None:
    assert split_words("") == []
    assert split_words("a") == ["a"]
    assert split_words("a..b") == ["a", "", "b"]
    assert split_words(".") == ["", ""]
    assert split_words("a.") == ["a", ""]


@pytest.mark.parametrize(("pattern", "key", "expected"), TOPIC_CASES)
def test_topic_single_binding(pattern: str, key: str, expected: bool) -> None:
    assert reference_match(pattern, key) == expected  # the table and the definition agree
    exchange = TopicExchange()
    exchange.bind("q", pattern, {})
    assert routed(exchange, key) == (["q"] if expected else [])
    # The same with an unrelated wildcard binding present (no literal fast path).
    exchange.bind("other", "zzz.*.#.zzz", {})
    assert routed(exchange, key) == (["q"] if expected else [])


def test_topic_all_patterns_at_once() -> None:
    exchange = TopicExchange()
    patterns = sorted({p for p, _, _ in TOPIC_CASES})
    for pattern in patterns:
        exchange.bind(pattern, pattern, {})  # destination named after its pattern
    for key in sorted({k for _, k, _ in TOPIC_CASES}):
        expected = [p for p in patterns if reference_match(p, key)]
        assert routed(exchange, key) == sorted(expected, key=repr), key


def test_topic_matches_reference_on_random_patterns() -> None:
    rng = random.Random(20240601)
    pattern_words = ["a", "b", "", "*", "#"]
    key_words = ["a", "b", ""]

    def make(words: list[str], max_len: int) -> str:
        n = rng.randint(0, max_len)
        return ".".join(rng.choice(words) for _ in range(n))

    for _ in range(60):
        exchange = TopicExchange()
        patterns = {make(pattern_words, 5) for _ in range(12)}
        for pattern in patterns:
            exchange.bind(pattern, pattern, {})
        for _ in range(40):
            key = make(key_words, 6)
            expected = sorted((p for p in patterns if reference_match(p, key)), key=repr)
            assert routed(exchange, key) == expected, (patterns, key)


def test_topic_destination_once_across_patterns() -> None:
    exchange = TopicExchange()
    for pattern in ("#", "a.*", "a.b", "*.b", "#.b", "a.#"):
        exchange.bind("q", pattern, {})
    exchange.bind("q2", "a.b", {})
    assert routed(exchange, "a.b") == ["q", "q2"]
    assert routed(exchange, "c") == ["q"]


def test_topic_literal_fast_path_switches_with_wildcards() -> None:
    exchange = TopicExchange()
    exchange.bind("q1", "a.b", {})
    assert routed(exchange, "a.b") == ["q1"]
    exchange.bind("q2", "a.*", {})
    assert routed(exchange, "a.b") == ["q1", "q2"]
    exchange.unbind("q2", "a.*", {})
    assert routed(exchange, "a.b") == ["q1"]
    assert routed(exchange, "a.c") == []


def topic_size(exchange: TopicExchange) -> tuple[int, int]:
    """(trie nodes, literal index entries)."""
    nodes, stack = 0, [exchange._root]
    while stack:
        node = stack.pop()
        nodes += 1
        stack.extend(node.children.values())
        stack.extend(n for n in (node.star, node.hash) if n is not None)
    return nodes, len(exchange._literal)


def assert_topic_empty(exchange: TopicExchange) -> None:
    root = exchange._root
    assert root.children == {} and root.star is None and root.hash is None
    assert not root.destinations
    assert exchange._literal == {} and exchange._wildcard_bindings == 0
    assert topic_size(exchange) == (1, 0)


def test_topic_unbind_prunes_trie() -> None:
    exchange = TopicExchange()
    patterns = ["a.b.c", "a.b", "a.*.c", "#", "a.#", "#.c", "", "a..b", "*.*", "a.b.c.d.e"]
    for pattern in patterns:
        exchange.bind("q1", pattern, {})
        exchange.bind("q2", pattern, {"x": 1})
    exchange.bind("p1", "x.*.y.#", {})
    exchange.bind("p2", "x.*.y.#", {})
    grown = topic_size(exchange)
    # Removing one of two bindings of a pattern keeps its path.
    assert exchange.unbind("p1", "x.*.y.#", {})
    assert topic_size(exchange) == grown
    assert routed(exchange, "x.1.y") == ["p2", "q1", "q2"]
    assert exchange.unbind("p2", "x.*.y.#", {})
    assert topic_size(exchange)[0] == grown[0] - 4
    for pattern in patterns:
        assert exchange.unbind("q2", pattern, {"x": 1})
    assert topic_size(exchange) == (grown[0] - 4, grown[1])
    for pattern in patterns:
        assert exchange.unbind("q1", pattern, {})
    assert_topic_empty(exchange)
    assert routed(exchange, "a.b.c") == []


def test_topic_unbind_destination_prunes_trie() -> None:
    exchange = TopicExchange()
    for pattern in ("a.b", "a.#", "*.b.#.c", ""):
        exchange.bind("q", pattern, {})
    assert len(exchange.unbind_destination("q")) == 4
    assert_topic_empty(exchange)


def test_topic_unbinding_a_prefix_keeps_longer_patterns() -> None:
    exchange = TopicExchange()
    exchange.bind("q1", "a", {})
    exchange.bind("q2", "a.b", {})
    exchange.bind("q3", "a.#", {})
    exchange.unbind("q1", "a", {})
    assert routed(exchange, "a.b") == ["q2", "q3"]
    assert routed(exchange, "a") == ["q3"]
    exchange.unbind("q3", "a.#", {})
    assert routed(exchange, "a.b") == ["q2"]
    exchange.unbind("q2", "a.b", {})
    assert_topic_empty(exchange)


def test_topic_pathological_patterns_finish() -> None:
    exchange = TopicExchange()
    many_hashes = ".".join(["#"] * 20) + ".a"
    exchange.bind("q1", many_hashes, {})
    exchange.bind("q2", ".".join(["#", "*"] * 10) + ".a", {})
    exchange.bind("q3", ".".join(["*"] * 199) + ".#", {})
    long_key = ".".join(f"w{i % 7}" for i in range(200))
    assert routed(exchange, long_key) == ["q3"]
    assert routed(exchange, long_key + ".a") == ["q1", "q2", "q3"]
    assert routed(exchange, ".".join(["a"] * 200)) == ["q1", "q2", "q3"]


# ---------------------------------------------------------------- headers

def headers_routed(args: dict[str, Any], headers: dict[str, Any] | None) -> bool:
    exchange = HeadersExchange()
    exchange.bind("q", "ignored", args)
    result = routed(exchange, "any key", headers)
    assert result in ([], ["q"])
    return result == ["q"]


@pytest.mark.parametrize(("args", "headers", "expected"), [
    # all (the default)
    ({"a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ({"a": 1, "b": "x"}, {"a": 1}, False),
    ({"a": 1, "b": "x"}, {"a": 1, "b": "y"}, False),
    ({"a": 1}, {}, False),
    ({"a": 1}, None, False),
    ({}, None, True),
    ({}, {"anything": 1}, True),
    ({"x-match": "all"}, None, True),
    # any
    ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x"}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "y"}, False),
    ({"x-match": "any", "a": 1}, {}, False),
    ({"x-match": "any", "a": 1}, None, False),
    ({"x-match": "any"}, {"a": 1}, False),
    ({"x-match": "any"}, None, False),
    # x- arguments are ignored by all/any ...
    ({"x-match": "all", "x-tag": "t"}, {}, True),
    ({"x-match": "all", "x-tag": "t", "a": 1}, {"a": 1}, True),
    ({"x-match": "any", "x-tag": "t"}, {"x-tag": "t"}, False),
    ({"x-match": "any", "x-tag": "t", "a": 1}, {"x-tag": "t"}, False),
    # ... but count for the -with-x variants (x-match itself never counts)
    ({"x-match": "all-with-x", "x-tag": "t"}, {}, False),
    ({"x-match": "all-with-x", "x-tag": "t"}, {"x-tag": "t"}, True),
    ({"x-match": "all-with-x", "x-tag": "t", "a": 1}, {"x-tag": "t"}, False),
    ({"x-match": "all-with-x", "x-tag": "t", "a": 1}, {"x-tag": "t", "a": 1}, True),
    ({"x-match": "all-with-x"}, None, True),
    ({"x-match": "any-with-x", "x-tag": "t", "a": 1}, {"x-tag": "t"}, True),
    ({"x-match": "any-with-x", "x-tag": "t", "a": 1}, {"x-tag": "u", "a": 2}, False),
    ({"x-match": "any-with-x"}, {"x-match": "any-with-x"}, False),
    # void (None) binding values test presence only
    ({"a": None}, {"a": "whatever"}, True),
    ({"a": None}, {"a": None}, True),
    ({"a": None}, {"b": 1}, False),
    ({"x-match": "any", "a": None, "b": 1}, {"a": 0}, True),
    ({"b": 1}, {"b": None}, False),
    # values compare by value, as Erlang's == does for AMQP field values
    ({"n": 1}, {"n": 1.0}, True),
    ({"n": 1}, {"n": True}, False),
    ({"n": True}, {"n": 1}, False),
    ({"n": True}, {"n": True}, True),
    ({"s": "text"}, {"s": b"text"}, True),
    ({"s": "1"}, {"s": 1}, False),
    ({"t": {"k": [1, "v"]}}, {"t": {"k": [1, "v"]}}, True),
    ({"t": {"k": [1, "v"]}}, {"t": {"k": [True, "v"]}}, False),
    ({"t": [1, 2]}, {"t": [2, 1]}, False),
])
def test_headers_matching(args: dict[str, Any], headers: dict[str, Any] | None,
                          expected: bool) -> None:
    assert headers_routed(args, headers) == expected


def test_headers_exchange_routes_each_destination_once() -> None:
    exchange = HeadersExchange()
    exchange.bind("q1", "", {"x-match": "any", "a": 1})
    exchange.bind("q1", "", {"x-match": "any", "b": 2})
    exchange.bind("q1", "other-key", {"x-match": "any", "a": 1})
    exchange.bind("q2", "", {"b": 2})
    exchange.bind("q3", "", {"c": 3})
    assert routed(exchange, "", {"a": 1, "b": 2}) == ["q1", "q2"]
    assert routed(exchange, "c", {"c": 3}) == ["q3"]
    assert routed(exchange, "", None) == []
    exchange.unbind("q1", "", {"x-match": "any", "a": 1})
    assert routed(exchange, "", {"a": 1}) == ["q1"]  # still bound through "other-key"
    assert len(exchange.unbind_destination("q1")) == 2
    assert routed(exchange, "", {"a": 1, "b": 2}) == ["q2"]


@pytest.mark.parametrize("value", ["foo", "ALL", "", "all ", b"bogus"])
def test_headers_invalid_x_match_value(value: Any) -> None:
    exchange = HeadersExchange()
    with pytest.raises(BindingError) as caught:
        exchange.bind("q", "", {"x-match": value, "a": 1})
    text = value.decode() if isinstance(value, bytes) else value
    assert str(caught.value) == (
        f'Invalid x-match field value <<"{text}">>; '
        "expected all, any, all-with-x, or any-with-x")
    assert not exchange.has_bindings()
    assert list(exchange.bindings()) == []


@pytest.mark.parametrize("value", [1, True, None, {"a": 1}])
def test_headers_invalid_x_match_type(value: Any) -> None:
    exchange = HeadersExchange()
    with pytest.raises(BindingError, match="Invalid x-match field type .*expected longstr"):
        exchange.bind("q", "", {"x-match": value})
    assert not exchange.has_bindings()


def test_headers_binding_argument_order_is_irrelevant() -> None:
    exchange = HeadersExchange()
    assert exchange.bind("q", "", {"x-match": "any", "a": 1, "b": 2})
    assert not exchange.bind("q", "", {"b": 2, "a": 1, "x-match": "any"})
    assert exchange.unbind("q", "", {"a": 1, "x-match": "any", "b": 2})
    assert not exchange.has_bindings()
    assert exchange._matchers == {}


# ---------------------------------------------------------------- routing never grows tables

def table_size(exchange: ExchangeType) -> Any:
    if isinstance(exchange, DirectExchange):
        return len(exchange._routes)
    if isinstance(exchange, FanoutExchange):
        return len(exchange._destinations)
    if isinstance(exchange, TopicExchange):
        return topic_size(exchange)
    if isinstance(exchange, HeadersExchange):
        return len(exchange._matchers)
    raise AssertionError(exchange)


@pytest.mark.parametrize("cls", ALL_TYPES)
def test_routing_unbound_keys_grows_nothing(cls: type[ExchangeType]) -> None:
    exchange = cls()
    exchange.bind("q1", "known", {})
    exchange.bind("q2", "a.*.c", {"x-match": "any", "h": 1})
    exchange.bind("q3", "#.z", {})
    before = (table_size(exchange), len(list(exchange.bindings())))
    for i in range(10_000):
        key = f"unbound.{i}.key{i % 13}"
        list(exchange.route(key, {"h": i}))
    assert (table_size(exchange), len(list(exchange.bindings()))) == before


def test_topic_cache_of_recent_keys_stays_bounded() -> None:
    exchange = TopicExchange()
    exchange.bind("q1", "known", {})
    exchange.bind("q3", "#.z", {})
    before = topic_size(exchange)
    for i in range(10_000):
        assert routed(exchange, f"unbound.{i}.z") == ["q3"]
        assert routed(exchange, f"unbound.{i}") == []
        assert len(exchange._cache) <= CACHE_SIZE
    assert topic_size(exchange) == before
