"""Topic matching (exchanges/topic.py) against a plain reference, its work bound, the
cache of recent keys, and matches run in slices.

No wall-clock assertions: the work of a match is measured in slices of a fixed number
of node visits, and the sliced publish path is driven by hand.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.exchanges import topic
from amqp_broker.exchanges.topic import (
    CACHE_SIZE,
    Finished,
    RouteDeferred,
    TopicExchange,
    TopicRouting,
    _Node,
    route_in_slices,
    split_words,
)

from inproc import Client, make_broker, of_type


def reference_match(pattern: str, key: str) -> bool:
    """The definition, word by word: '*' is one word, '#' zero or more."""
    pattern_words, key_words = split_words(pattern), split_words(key)

    @cache
    def match(p: int, k: int) -> bool:
        if p == len(pattern_words):
            return k == len(key_words)
        word = pattern_words[p]
        if word == "#":
            return any(match(p + 1, j) for j in range(k, len(key_words) + 1))
        return (k < len(key_words) and word in ("*", key_words[k])
                and match(p + 1, k + 1))

    return match(0, 0)


def expected(bindings: dict[str, set[str]], key: str) -> list[str]:
    """Destinations of the patterns (pattern -> destinations) that match key."""
    found: set[str] = set()
    for pattern, destinations in bindings.items():
        if reference_match(pattern, key):
            found |= destinations
    return sorted(found)


def routed(exchange: TopicExchange, key: str) -> list[Hashable]:
    result = list(exchange.route(key, None))
    assert len(result) == len(set(result)), result
    return sorted(result, key=repr)


def sliced(exchange: TopicExchange, key: str, slice_work: int = 1) -> tuple[list[Hashable], int]:
    """The same match run as a TopicRouting of tiny slices: (destinations, slices)."""
    exchange._cache.clear()
    task = TopicRouting(exchange, key, slice_work)
    slices = 1
    while not task.step():
        slices += 1
    return sorted(task.result, key=repr), slices


def trie_nodes(exchange: TopicExchange) -> list[_Node]:
    nodes, stack = [], [exchange._root]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.children.values())
        stack.extend(n for n in (node.star, node.hash) if n is not None)
    return nodes


def bookkeeping(exchange: TopicExchange) -> dict[tuple[str, ...], tuple[int, int, Any, Any]]:
    """Per node, by its path of words: what bind and unbind maintain incrementally."""
    out: dict[tuple[str, ...], tuple[int, int, Any, Any]] = {}
    stack: list[tuple[tuple[str, ...], _Node]] = [((), exchange._root)]
    while stack:
        path, node = stack.pop()
        onward = sorted(node.onward) if node.onward else None
        depths = sorted(node.dest_depths.items()) if node.dest_depths else None
        out[path] = (node.hashes_below, node.bound, onward, depths)
        stack.extend((path + (word,), child) for word, child in node.children.items())
        stack.extend((path + (word,), child) for word, child in (("*", node.star), ("#", node.hash))
                     if child is not None)
    return out


WORDS = st.sampled_from(["a", "b", ""])
PATTERN_WORDS = st.sampled_from(["a", "b", "", "*", "#", "#", "*"])


def keys(max_words: int = 9) -> st.SearchStrategy[str]:
    return st.lists(WORDS, max_size=max_words).map(".".join)


def patterns(max_words: int = 7) -> st.SearchStrategy[str]:
    return st.lists(PATTERN_WORDS, max_size=max_words).map(".".join)


# --- the matcher agrees with the definition -----------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.dictionaries(patterns(), st.sets(st.sampled_from("pqrs"), min_size=1, max_size=2),
                       max_size=12),
       st.lists(keys(), min_size=1, max_size=12))
def test_matches_reference(bindings: dict[str, set[str]], routing_keys: list[str]) -> None:
    exchange = TopicExchange()
    for pattern, destinations in bindings.items():
        for destination in destinations:
            exchange.bind(destination, pattern, {})
    for key in routing_keys:
        want = expected(bindings, key)
        assert routed(exchange, key) == want, key
        assert routed(exchange, key) == want, key  # again, from the cache
        assert sliced(exchange, key)[0] == want, key


@settings(max_examples=150, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=14), st.data())
def test_unbind_keeps_matching_and_bookkeeping(pattern_list: list[str],
                                                data: st.DataObject) -> None:
    exchange = TopicExchange()
    for i, pattern in enumerate(pattern_list):
        exchange.bind(f"q{i}", pattern, {})
    removed = data.draw(st.sets(st.sampled_from(range(len(pattern_list)))))
    for i in sorted(removed):
        assert exchange.unbind(f"q{i}", pattern_list[i], {})
    remaining = {f"q{i}": p for i, p in enumerate(pattern_list) if i not in removed}
    # the incremental counts equal those of the same bindings bound afresh
    fresh = TopicExchange()
    for i, pattern in enumerate(pattern_list):
        if i not in removed:
            fresh.bind(f"q{i}", pattern, {})
    assert bookkeeping(exchange) == bookkeeping(fresh)
    for key in data.draw(st.lists(keys(), min_size=1, max_size=8)):
        want = sorted(q for q, p in remaining.items() if reference_match(p, key))
        assert routed(exchange, key) == want


def test_stacked_hashes_on_random_keys() -> None:
    """Many overlapping `#.w.#.w...` patterns, where '#' nodes are reached from many
    words: every pattern checked against the definition."""
    rng = random.Random(7)
    exchange = TopicExchange()
    bindings: dict[str, set[str]] = {}
    for i in range(150):
        words = [rng.choice(["a", "b", "*"]) for _ in range(rng.randint(1, 6))]
        pattern = "#." + ".#.".join(words) + rng.choice(["", ".#", ".a", ".*.b"])
        exchange.bind(f"q{i % 23}", pattern, {})
        bindings.setdefault(pattern, set()).add(f"q{i % 23}")
    for _ in range(150):
        key = ".".join(rng.choice("ab") for _ in range(rng.randint(0, 30)))
        assert routed(exchange, key) == expected(bindings, key), key


# --- the work of a match is bounded --------------------------------------------------------

def adversarial(exchange: TopicExchange, count: int, seed: int = 9) -> None:
    """The issue's set: `#.a.#.b.#...` with 15 to 30 words over a two-word vocabulary."""
    rng = random.Random(seed)
    for i in range(count):
        words = [rng.choice("ab") for _ in range(rng.randint(15, 30))]
        tail = ".#" if i % 2 else ""
        exchange.bind(f"q{i % 50}", "#." + ".#.".join(words) + tail, {})


def random_key(rng: random.Random, words: int) -> str:
    return ".".join(rng.choice("ab") for _ in range(words))


def test_stacked_hashes_cost_about_one_visit_per_trie_node() -> None:
    exchange = TopicExchange()
    adversarial(exchange, 300)
    nodes = len(trie_nodes(exchange))
    key = random_key(random.Random(1), 100)
    result, slices = sliced(exchange, key, slice_work=100)
    assert len(result) == 50
    # A walk of (node, word index) states would be nodes x 100 words.
    assert slices * 100 <= 4 * nodes


def test_work_grows_with_the_key_not_with_key_times_nodes() -> None:
    exchange = TopicExchange()
    adversarial(exchange, 200)
    rng = random.Random(3)
    work = []
    for words in (50, 100, 200):
        key = random_key(rng, words)
        work.append(sliced(exchange, key, slice_work=50)[1])
    assert work[2] < 1.5 * work[0]  # the live set saturates; doubling the key adds little


# --- the cache of recent keys ------------------------------------------------------------

def test_cache_answers_repeated_keys_and_forgets_on_bind_and_unbind() -> None:
    exchange = TopicExchange()
    exchange.bind("q1", "a.#", {})
    exchange.bind("q2", "*.b", {})
    first = exchange.route("a.b", None)
    assert sorted(first, key=repr) == ["q1", "q2"]
    assert exchange.route("a.b", None) is first  # the cached tuple
    exchange.bind("q3", "#.b", {})
    assert routed(exchange, "a.b") == ["q1", "q2", "q3"]
    exchange.unbind("q1", "a.#", {})
    assert routed(exchange, "a.b") == ["q2", "q3"]
    exchange.unbind_destination("q2")
    assert routed(exchange, "a.b") == ["q3"]


def test_cache_is_bounded_and_least_recently_used() -> None:
    exchange = TopicExchange()
    exchange.bind("q", "k.#", {})
    exchange.route("k.hot", None)
    for i in range(CACHE_SIZE * 3):
        exchange.route(f"k.{i}", None)
        exchange.route("k.hot", None)  # kept by being used
        assert len(exchange._cache) <= CACHE_SIZE
    assert "k.hot" in exchange._cache
    assert "k.0" not in exchange._cache


def test_literal_only_exchange_needs_no_cache() -> None:
    exchange = TopicExchange()
    exchange.bind("q", "a.b", {})
    for i in range(1000):
        exchange.route(f"a.{i}", None)
    assert routed(exchange, "a.b") == ["q"]
    assert not exchange._cache


# --- matches in slices -------------------------------------------------------------------

def test_route_in_slices_defers_a_long_match(monkeypatch: pytest.MonkeyPatch) -> None:
    exchange = TopicExchange()
    adversarial(exchange, 100)
    key = random_key(random.Random(5), 60)
    want = routed(exchange, key)
    exchange._cache.clear()
    monkeypatch.setattr(topic, "SLICE_WORK", 200)
    finished: Finished = {}
    with pytest.raises(RouteDeferred) as deferred:
        route_in_slices(exchange, key, None, finished)
    task = deferred.value.task
    slices = 1
    while not task.step():
        slices += 1
    assert slices > 3
    assert sorted(task.result, key=repr) == want
    finished[(exchange, key)] = (task.version, task.result)
    # routing again takes the finished result
    assert route_in_slices(exchange, key, None, finished) is task.result
    # a short match on the same table does not defer
    assert list(route_in_slices(exchange, "c", None, finished)) == []


def test_route_in_slices_routes_other_types_at_once() -> None:
    from amqp_broker.exchanges.direct import DirectExchange
    direct = DirectExchange()
    direct.bind("q", "k", {})
    assert list(route_in_slices(direct, "k", None, {})) == ["q"]


def test_a_finished_match_is_stale_after_a_bind() -> None:
    exchange = TopicExchange()
    exchange.bind("q1", "#.a", {})
    finished: Finished = {(exchange, "x.a"): (exchange._version, ("old",))}
    assert route_in_slices(exchange, "x.a", None, finished) == ("old",)
    exchange.bind("q2", "x.#", {})
    assert sorted(route_in_slices(exchange, "x.a", None, finished), key=repr) == ["q1", "q2"]


def test_sliced_match_starts_again_when_bindings_change() -> None:
    exchange = TopicExchange()
    adversarial(exchange, 60)
    key = random_key(random.Random(2), 80)
    task = TopicRouting(exchange, key, 50)
    assert not task.step()
    assert not task.step()
    exchange.unbind_destination("q0")
    exchange.bind("late", "#", {})
    while not task.step():
        pass
    assert task.restarts == 1
    assert sorted(task.result, key=repr) == routed(exchange, key)
    assert "late" in task.result and "q0" not in task.result


# --- a publishing connection waits for its own long match, nobody else does -------------

@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topic, "SLICE_WORK", 100)


def adversarial_broker() -> tuple[Broker, Client]:
    """A broker whose topic exchange 'adv' has the stacked '#' set bound to queues
    adv0..adv9, set up through a client (returned, with channel 1 open)."""
    broker = make_broker()
    setup = Client(broker)
    setup.open_channel()
    setup.send(commands.Exchange.Declare(exchange="adv", exchange_type="topic"), 1)
    rng = random.Random(9)
    for i in range(10):
        setup.send(commands.Queue.Declare(queue=f"adv{i}"), 1)
    for i in range(100):
        words = [rng.choice("ab") for _ in range(rng.randint(15, 30))]
        setup.send(commands.Queue.Bind(queue=f"adv{i % 10}", exchange="adv",
                                       routing_key="#." + ".#.".join(words) + ".#" * (i % 2)), 1)
    setup.send(commands.Queue.Bind(queue="adv0", exchange="adv", routing_key="#"), 1)
    setup.frames()
    return broker, setup


BAD_KEY = random_key(random.Random(11), 100)


def slices_until_routed(client: Client) -> int:
    slices = 0
    while client.conn.routing is not None:
        client.conn.continue_routing()
        slices += 1
    return slices


def ready(broker: Broker, queue: str) -> list[bytes]:
    return [m.body for m in broker.vhosts["/"].queues[queue].ready]


def test_long_match_holds_only_the_publishing_connection(small_slices: None) -> None:
    broker, other = adversarial_broker()
    publisher = Client(broker)
    publisher.open_channel()
    publisher.send(commands.Confirm.Select(), 1)
    publisher.frames()
    # the bad key, then a plain publish and a declare in the same read
    publisher.send_many(publisher.publish_frames(1, "adv", BAD_KEY, b"first")
                        + publisher.publish_frames(1, "", "adv0", b"second")
                        + [publisher.encode(commands.Queue.Declare(queue="after"), 1)])
    assert publisher.conn.routing is not None and publisher.conn.paused
    assert publisher.frames() == []  # no confirm, nothing after the publish yet
    assert ready(broker, "adv0") == []
    # meanwhile another connection is served at once
    other.send(commands.Queue.Declare(queue="elsewhere"), 1)
    assert of_type(other.frames(), commands.Queue.DeclareOk)
    assert slices_until_routed(publisher) > 3
    assert not publisher.conn.paused
    got = publisher.frames()
    acks = of_type(got, commands.Basic.Ack)
    assert acks and acks[-1][1].delivery_tag == 2  # both publishes confirmed, in order
    assert of_type(got, commands.Queue.DeclareOk)
    assert ready(broker, "adv0") == [b"first", b"second"]
    expected_queues = {q.name for q in broker.vhosts["/"].route(
        broker.vhosts["/"].exchanges["adv"], BAD_KEY, lambda: None)}
    assert len(expected_queues) > 1
    for name in expected_queues:
        assert ready(broker, name)[0] == b"first"


def test_bindings_changed_between_slices_are_routed_as_they_end(small_slices: None) -> None:
    broker, other = adversarial_broker()
    publisher = Client(broker)
    publisher.open_channel()
    publisher.publish(1, "adv", BAD_KEY, b"m")
    assert publisher.conn.routing is not None
    publisher.conn.continue_routing()
    other.send(commands.Queue.Delete(queue="adv1"), 1)
    other.send(commands.Queue.Declare(queue="late"), 1)
    other.send(commands.Queue.Bind(queue="late", exchange="adv", routing_key="#"), 1)
    slices_until_routed(publisher)
    assert publisher.conn.routing is None
    assert ready(broker, "late") == [b"m"]
    assert "adv1" not in broker.vhosts["/"].queues


def test_exchange_deleted_while_routing_is_404(small_slices: None) -> None:
    broker, other = adversarial_broker()
    publisher = Client(broker)
    publisher.open_channel()
    publisher.publish(1, "adv", BAD_KEY, b"m")
    publisher.conn.continue_routing()
    other.send(commands.Exchange.Delete(exchange="adv"), 1)
    slices_until_routed(publisher)
    closes = of_type(publisher.frames(), commands.Channel.Close)
    assert closes and closes[0][1].reply_code == 404
    assert not publisher.conn.paused


def test_connection_closed_while_routing_drops_the_match(small_slices: None) -> None:
    broker, _ = adversarial_broker()
    publisher = Client(broker)
    publisher.open_channel()
    publisher.publish(1, "adv", BAD_KEY, b"m")
    assert publisher.conn.routing is not None
    publisher.conn.connection_lost()
    assert publisher.conn.routing is None and not publisher.conn.paused
    publisher.conn.continue_routing()  # nothing left to do
    assert all(not ready(broker, f"adv{i}") for i in range(10))


def test_tx_commit_routes_long_matches_in_slices(small_slices: None) -> None:
    broker, _ = adversarial_broker()
    publisher, other = Client(broker), Client(broker)
    publisher.open_channel()
    other.open_channel()
    publisher.send(commands.Tx.Select(), 1)
    publisher.frames()
    publisher.publish(1, "adv", BAD_KEY, b"m")
    publisher.send_many([publisher.encode(commands.Tx.Commit(), 1),
                         publisher.encode(commands.Basic.Qos(prefetch_count=3), 1)])
    assert publisher.conn.routing is not None  # the commit waits for its match
    assert publisher.frames() == []
    assert all(not ready(broker, f"adv{i}") for i in range(10))  # nothing half-committed
    other.send(commands.Basic.Qos(prefetch_count=1), 1)  # others are served meanwhile
    assert of_type(other.frames(), commands.Basic.QosOk)
    slices = 0
    while publisher.conn.routing is not None:
        publisher.conn.continue_routing()
        slices += 1
    assert slices > 1
    kinds = [type(v) for _, v in publisher.frames()]
    assert kinds == [commands.Tx.CommitOk, commands.Basic.QosOk]  # in order
    assert any(ready(broker, f"adv{i}") for i in range(10))


def test_dead_letters_route_long_matches_in_slices(small_slices: None) -> None:
    """A dead letter into the adversarial exchange holds nobody: its match runs a slice per
    redispatch turn of the broker, and the dead letter arrives once it is done."""
    broker, setup = adversarial_broker()
    setup.send(commands.Queue.Declare(queue="dl-src", arguments={
        "x-dead-letter-exchange": "adv", "x-dead-letter-routing-key": BAD_KEY}), 1)
    setup.publish(1, "", "dl-src", b"dead")
    setup.send(commands.Basic.Get(queue="dl-src"), 1)
    (_, ok), = of_type(setup.frames(), commands.Basic.GetOk)
    setup.send(commands.Basic.Reject(delivery_tag=ok.delivery_tag, requeue=False), 1)
    assert not of_type(setup.frames(), (commands.Channel.Close, commands.Connection.Close))
    assert broker.routing  # the match waits for the broker's turns, not on this connection
    assert all(not ready(broker, f"adv{i}") for i in range(10))
    turns = 0
    while broker.routing:
        broker.run_redispatch()
        turns += 1
    assert turns > 1
    assert ready(broker, "adv0")  # bound with '#': every dead letter reaches it
