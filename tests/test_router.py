"""VHost routing without sockets: exchanges, bindings, exchange-to-exchange bindings and
alternate exchanges, as RabbitMQ 3.10 routes.

The exchange types' own tables are tested in tests/test_exchanges.py; here the vhost
puts them together (VHost.route with alternate exchanges, bind / unbind, deletions).
"""

from __future__ import annotations

from typing import Any

import pytest

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.protocol import fast
from amqp_broker.protocol.errors import AMQPError
from amqp_broker.queue import Queue
from amqp_broker.vhost import Exchange, VHost

CLIENT = object()


@pytest.fixture
def vhost() -> VHost:
    return Broker(Config(data_dir=None)).vhosts["/"]


def queues(vhost: VHost, *names: str) -> list[Queue]:
    return [vhost.declare_queue(n, False, False, False, False, {}, CLIENT)[0] for n in names]


def exchange(vhost: VHost, name: str, kind: str, **arguments: Any) -> Exchange:
    return vhost.declare_exchange(name, kind, False, False, False, False, arguments)


def headers_props(**headers: Any) -> bytes:
    return fast.encode_properties(fast.Properties(headers=headers))


def routed(vhost: VHost, ex: str, key: str, props: bytes = b"") -> set[str]:
    """Names of the queues a publish to ex with key reaches (alternates included)."""
    source = vhost.exchanges[ex]
    found = vhost.route(source, key, lambda: fast.message_headers(props))
    return {q.name for q in found}


def no_headers() -> Any:
    raise AssertionError("headers decoded for an exchange that does not need them")


# --- one exchange ------------------------------------------------------------------------

def test_default_exchange_routes_by_queue_name(vhost: VHost) -> None:
    queues(vhost, "a", "b")
    assert routed(vhost, "", "a") == {"a"}
    assert routed(vhost, "", "missing") == set()
    assert vhost.route(vhost.default_exchange, "b", no_headers)


def test_default_exchange_refuses_bindings(vhost: VHost) -> None:
    [q] = queues(vhost, "q")
    with pytest.raises(AMQPError) as info:
        vhost.bind(vhost.default_exchange, q, "x", {})
    assert info.value.reply_code == 403


def test_direct_routes_by_exact_key(vhost: VHost) -> None:
    ex = exchange(vhost, "d", "direct")
    a, b, c = queues(vhost, "a", "b", "c")
    vhost.bind(ex, a, "red", {})
    vhost.bind(ex, b, "red", {})
    vhost.bind(ex, c, "green", {})
    vhost.bind(ex, c, "red", {})
    assert routed(vhost, "d", "red") == {"a", "b", "c"}
    assert routed(vhost, "d", "green") == {"c"}
    assert routed(vhost, "d", "Red") == set()
    assert vhost.route(ex, "red", no_headers)


def test_fanout_ignores_the_key(vhost: VHost) -> None:
    ex = exchange(vhost, "f", "fanout")
    a, b = queues(vhost, "a", "b")
    vhost.bind(ex, a, "", {})
    vhost.bind(ex, b, "whatever", {})
    assert routed(vhost, "f", "any.key") == {"a", "b"}


@pytest.mark.parametrize("key, expected", [
    ("quick.orange.rabbit", {"q1", "q2"}),
    ("lazy.orange.elephant", {"q1", "q2"}),
    ("quick.orange.fox", {"q1"}),
    ("lazy.brown.fox", {"q2"}),
    ("lazy.pink.rabbit", {"q2"}),  # matched twice, delivered once
    ("quick.brown.fox", set()),
    ("orange", set()),
    ("quick.orange.male.rabbit", set()),
    ("lazy.orange.male.rabbit", {"q2"}),
    ("lazy", {"q2"}),
    ("a.b", {"q3"}),
    ("a.x.y.b", {"q3"}),
])
def test_topic_patterns(vhost: VHost, key: str, expected: set[str]) -> None:
    ex = exchange(vhost, "t", "topic")
    q1, q2, q3 = queues(vhost, "q1", "q2", "q3")
    vhost.bind(ex, q1, "*.orange.*", {})
    vhost.bind(ex, q2, "*.*.rabbit", {})
    vhost.bind(ex, q2, "lazy.#", {})
    vhost.bind(ex, q3, "a.#.b", {})
    assert routed(vhost, "t", key) == expected


def test_headers_all_any_and_presence(vhost: VHost) -> None:
    ex = exchange(vhost, "h", "headers")
    all_q, any_q, present_q = queues(vhost, "all", "any", "present")
    vhost.bind(ex, all_q, "", {"x-match": "all", "format": "pdf", "type": "report"})
    vhost.bind(ex, any_q, "", {"x-match": "any", "format": "pdf", "type": "log"})
    vhost.bind(ex, present_q, "", {"x-match": "all", "urgent": None})
    assert routed(vhost, "h", "", headers_props(format="pdf", type="report")) == {"all", "any"}
    assert routed(vhost, "h", "", headers_props(format="zip", type="log")) == {"any"}
    assert routed(vhost, "h", "", headers_props(urgent=False)) == {"present"}
    assert routed(vhost, "h", "") == set()
    assert routed(vhost, "h", "ignored", headers_props(format="zip")) == set()


def test_headers_match_values_of_any_wire_type(vhost: VHost) -> None:
    ex = exchange(vhost, "h", "headers")
    [q] = queues(vhost, "q")
    vhost.bind(ex, q, "", {"n": 1, "ts": fast.Timestamp(2**62)})
    # a typed (re-encoded) 'l' 1 and 'T' 2**62 match as numbers
    props = fast.encode_properties(fast.decode_properties(headers_props(
        n=1, ts=fast.Timestamp(2**62))))
    assert routed(vhost, "h", "", props) == {"q"}
    assert routed(vhost, "h", "", headers_props(n=True, ts=fast.Timestamp(2**62))) == set()


# --- bindings come and go ----------------------------------------------------------------

def test_unbind_stops_routing_and_is_idempotent(vhost: VHost) -> None:
    ex = exchange(vhost, "d", "direct")
    a, b = queues(vhost, "a", "b")
    vhost.bind(ex, a, "k", {})
    vhost.bind(ex, b, "k", {})
    vhost.unbind(ex, a, "k", {})
    assert routed(vhost, "d", "k") == {"b"}
    vhost.unbind(ex, a, "k", {})  # no error for a binding that is gone
    assert routed(vhost, "d", "k") == {"b"}


def test_same_key_different_arguments_are_two_bindings(vhost: VHost) -> None:
    ex = exchange(vhost, "h", "headers")
    [q] = queues(vhost, "q")
    vhost.bind(ex, q, "", {"a": 1})
    vhost.bind(ex, q, "", {"b": 2})
    assert routed(vhost, "h", "", headers_props(b=2)) == {"q"}
    vhost.unbind(ex, q, "", {"a": 1})
    assert routed(vhost, "h", "", headers_props(b=2)) == {"q"}
    assert routed(vhost, "h", "", headers_props(a=1)) == set()


def test_deleted_queue_leaves_every_exchange(vhost: VHost) -> None:
    d, t = exchange(vhost, "d", "direct"), exchange(vhost, "t", "topic")
    a, b = queues(vhost, "a", "b")
    for ex in (d, t):
        vhost.bind(ex, a, "k", {})
        vhost.bind(ex, b, "k", {})
    vhost.delete_queue(a)
    assert routed(vhost, "d", "k") == {"b"} and routed(vhost, "t", "k") == {"b"}
    assert routed(vhost, "", "a") == set()


def test_auto_delete_exchange_goes_with_its_last_binding(vhost: VHost) -> None:
    ex = vhost.declare_exchange("auto", "direct", False, False, True, False, {})
    a, b = queues(vhost, "a", "b")
    vhost.bind(ex, a, "k", {})
    vhost.bind(ex, b, "k", {})
    vhost.unbind(ex, a, "k", {})
    assert "auto" in vhost.exchanges
    vhost.delete_queue(b)
    assert "auto" not in vhost.exchanges and ex.deleted


def test_deleted_exchange_drops_its_bindings(vhost: VHost) -> None:
    src = exchange(vhost, "src", "fanout")
    ex = exchange(vhost, "d", "direct")
    [a] = queues(vhost, "a")
    vhost.bind(ex, a, "k", {})
    vhost.bind(src, ex, "", {})
    vhost.delete_exchange("d", if_unused=False)
    assert "d" not in vhost.exchanges
    assert routed(vhost, "src", "k") == set()
    assert not src.table.has_bindings()


# --- exchange to exchange ------------------------------------------------------------------

def test_exchange_to_exchange_follows_each_hop_with_the_original_key(vhost: VHost) -> None:
    front = exchange(vhost, "front", "topic")
    mid = exchange(vhost, "mid", "direct")
    fan = exchange(vhost, "fan", "fanout")
    direct_q, fan_q, front_q = queues(vhost, "direct_q", "fan_q", "front_q")
    vhost.bind(front, mid, "orders.*", {})
    vhost.bind(front, front_q, "#", {})
    vhost.bind(mid, direct_q, "orders.new", {})
    vhost.bind(mid, fan, "orders.old", {})
    vhost.bind(fan, fan_q, "", {})
    assert routed(vhost, "front", "orders.new") == {"direct_q", "front_q"}
    assert routed(vhost, "front", "orders.old") == {"fan_q", "front_q"}
    assert routed(vhost, "front", "other") == {"front_q"}


def test_exchange_cycles_and_diamonds_route_each_queue_once(vhost: VHost) -> None:
    a, b, c = (exchange(vhost, n, "fanout") for n in ("a", "b", "c"))
    [q] = queues(vhost, "q")
    vhost.bind(a, b, "", {})
    vhost.bind(b, a, "", {})  # a cycle
    vhost.bind(a, c, "", {})
    vhost.bind(b, c, "", {})  # two paths to c
    vhost.bind(c, q, "", {})
    vhost.bind(a, q, "", {})
    found = vhost.route(a, "k", no_headers)
    assert [x.name for x in found] == ["q"]


def test_headers_exchange_behind_another_decodes_headers(vhost: VHost) -> None:
    front = exchange(vhost, "front", "fanout")
    hx = exchange(vhost, "hx", "headers")
    [q] = queues(vhost, "q")
    vhost.bind(front, hx, "", {})
    vhost.bind(hx, q, "", {"kind": "a"})
    calls: list[int] = []
    props = headers_props(kind="a")

    def headers_of() -> Any:
        calls.append(1)
        return fast.message_headers(props)

    assert {x.name for x in vhost.route(front, "", headers_of)} == {"q"}
    assert calls == [1]
    assert routed(vhost, "front", "", headers_props(kind="b")) == set()


def test_removing_an_exchange_binding_stops_the_hop(vhost: VHost) -> None:
    front, back = exchange(vhost, "front", "direct"), exchange(vhost, "back", "fanout")
    [q] = queues(vhost, "q")
    vhost.bind(front, back, "k", {})
    vhost.bind(back, q, "", {})
    assert routed(vhost, "front", "k") == {"q"}
    vhost.unbind(front, back, "k", {})
    assert routed(vhost, "front", "k") == set()


# --- alternate exchanges -------------------------------------------------------------------

def test_unroutable_message_goes_to_the_alternate_exchange(vhost: VHost) -> None:
    alt = exchange(vhost, "alt", "fanout")
    main = exchange(vhost, "main", "direct", **{"alternate-exchange": "alt"})
    routed_q, alt_q = queues(vhost, "routed", "unrouted")
    vhost.bind(main, routed_q, "known", {})
    vhost.bind(alt, alt_q, "", {})
    assert routed(vhost, "main", "known") == {"routed"}  # the alternate is not used
    assert routed(vhost, "main", "unknown") == {"unrouted"}


def test_alternate_exchanges_chain_and_stop_at_a_loop(vhost: VHost) -> None:
    exchange(vhost, "alt2", "fanout")
    exchange(vhost, "alt1", "direct", **{"alternate-exchange": "alt2"})
    exchange(vhost, "main", "direct", **{"alternate-exchange": "alt1"})
    [last] = queues(vhost, "last")
    vhost.bind(vhost.exchanges["alt2"], last, "", {})
    assert routed(vhost, "main", "x") == {"last"}
    vhost.unbind(vhost.exchanges["alt2"], last, "", {})
    exchange(vhost, "loop_a", "direct", **{"alternate-exchange": "loop_b"})
    exchange(vhost, "loop_b", "direct", **{"alternate-exchange": "loop_a"})
    assert routed(vhost, "loop_a", "x") == set()
    assert routed(vhost, "main", "x") == set()


def test_missing_alternate_exchange_routes_nowhere(vhost: VHost) -> None:
    exchange(vhost, "main", "direct", **{"alternate-exchange": "nope"})
    assert routed(vhost, "main", "x") == set()


def test_alternate_headers_exchange_matches_the_message_headers(vhost: VHost) -> None:
    exchange(vhost, "alt", "headers")
    exchange(vhost, "main", "direct", **{"alternate-exchange": "alt"})
    [q] = queues(vhost, "q")
    vhost.bind(vhost.exchanges["alt"], q, "", {"kind": "x"})
    assert routed(vhost, "main", "k", headers_props(kind="x")) == {"q"}
    assert routed(vhost, "main", "k", headers_props(kind="y")) == set()


def test_alternate_of_an_exchange_reached_by_an_exchange_binding(vhost: VHost) -> None:
    front = exchange(vhost, "front", "fanout")
    exchange(vhost, "alt", "fanout")
    back = exchange(vhost, "back", "direct", **{"alternate-exchange": "alt"})
    other, alt_q = queues(vhost, "other", "alt_q")
    vhost.bind(front, back, "", {})
    vhost.bind(back, other, "nomatch", {})
    vhost.bind(vhost.exchanges["alt"], alt_q, "", {})
    assert routed(vhost, "front", "k") == {"alt_q"}


def test_alternate_unused_when_the_exchange_routes_to_an_exchange(vhost: VHost) -> None:
    exchange(vhost, "alt", "fanout")
    main = exchange(vhost, "main", "direct", **{"alternate-exchange": "alt"})
    back = exchange(vhost, "back", "fanout")  # no bindings: routes nowhere
    [alt_q] = queues(vhost, "alt_q")
    vhost.bind(vhost.exchanges["alt"], alt_q, "", {})
    vhost.bind(main, back, "k", {})
    assert routed(vhost, "main", "other") == {"alt_q"}  # main matched nothing: alternate
    assert routed(vhost, "main", "k") == set()  # main matched back: no alternate
