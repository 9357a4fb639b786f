"""Policies and operator policies with effect (amqp_broker/policies.py): matching,
priority, the operator merge, per-key precedence against queue arguments, validation
texts (RabbitMQ 3.10.8's, as its management API answered them), re-application to live
queues and exchanges, and the per-queue consumer timeout; then end to end through pika
and the management API of a broker process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from pamqp import commands

from amqp_broker import policies
from amqp_broker.broker import Broker
from amqp_broker.definitions import DefinitionsError, import_definitions
from amqp_broker.management.app import create_app
from amqp_broker.policies import Policy
from amqp_broker.storage import DiskStore
from tests.helpers import BrokerProcess, free_port, pika_connect, port_open
from tests.inproc import Client, make_broker
from tests.mgmt_client import ApiClient


def _policy(name: str, pattern: str = "^q", priority: int = 0, apply_to: str = "all",
            **definition: Any) -> Policy:
    return Policy("/", name, pattern, apply_to, priority,
                  {k.replace("_", "-"): v for k, v in definition.items()})


# --- matching and priority -------------------------------------------------------------
def test_pattern_is_an_unanchored_search_on_the_name() -> None:
    p = _policy("p", pattern="ord", max_length=1)
    assert policies.matches(p, "queue", "orders", "classic")
    assert policies.matches(p, "queue", "big.orders.eu", "classic")
    assert not policies.matches(p, "queue", "invoices", "classic")
    assert not policies.matches(_policy("a", pattern="^ord$", max_length=1),
                                "queue", "orders", "classic")


@pytest.mark.parametrize(("apply_to", "kind", "queue_type", "expected"), [
    ("all", "queue", "classic", True), ("all", "exchange", None, True),
    ("queues", "queue", "quorum", True), ("queues", "exchange", None, False),
    ("exchanges", "queue", "classic", False), ("exchanges", "exchange", None, True),
    ("classic_queues", "queue", "classic", True), ("classic_queues", "queue", "quorum", False),
    ("quorum_queues", "queue", "quorum", True), ("quorum_queues", "exchange", None, False),
    ("streams", "queue", "stream", True), ("streams", "queue", "classic", False),
])
def test_apply_to(apply_to: str, kind: str, queue_type: str | None, expected: bool) -> None:
    p = _policy("p", pattern="", apply_to=apply_to, max_length_bytes=10)
    assert policies.matches(p, kind, "x", queue_type) is expected


def test_highest_priority_wins_and_equal_priorities_go_by_name() -> None:
    low = _policy("low", priority=1, max_length=1)
    high = _policy("high", priority=5, max_length=2)
    assert policies.best(policies.ordered([low, high]), "queue", "q1", "classic") is high
    b, a = _policy("b", max_length=1), _policy("a", max_length=2)
    assert policies.best(policies.ordered([b, a]), "queue", "q1", "classic") is a


def test_a_policy_with_a_key_the_queue_type_does_not_take_does_not_match_it() -> None:
    # RabbitMQ's is_policy_applicable: the stream-only max-age keeps the higher policy
    # off classic queues, so the lower one applies
    stream_only = _policy("streams", priority=9, max_age="1h", max_length_bytes=5)
    plain = _policy("plain", priority=1, max_length=3)
    ordered = policies.ordered([stream_only, plain])
    assert policies.best(ordered, "queue", "q1", "classic") is plain
    assert policies.best(ordered, "queue", "q1", "stream") is stream_only
    # queue-mode is a classic-only key: a quorum queue skips that policy
    assert policies.best([_policy("lazy", queue_mode="lazy")], "queue", "q1", "quorum") is None


# --- operator merge and precedence ------------------------------------------------------
def test_operator_merge_lower_numeric_value_wins() -> None:
    user = _policy("u", max_length=100, message_ttl=5000, dead_letter_exchange="dlx")
    operator = _policy("op", max_length=10, message_ttl=60000, expires=1000)
    assert policies.merge(user, operator) == {
        "dead-letter-exchange": "dlx", "expires": 1000, "max-length": 10,
        "message-ttl": 5000}
    assert policies.merge(None, operator) == operator.definition
    assert policies.merge(user, None) == dict(sorted(user.definition.items()))
    assert policies.merge(None, None) == {}


@pytest.mark.parametrize(("key", "argument", "policy", "classic", "quorum"), [
    ("message-ttl", 100, 50, 50, 50),
    ("message-ttl", 50, 100, 50, 50),
    ("max-length", 10, 3, 3, 3),
    ("max-length-bytes", 3, 10, 3, 3),
    ("expires", 5000, 9000, 5000, 9000),  # quorum: the policy has precedence
    ("delivery-limit", 5, 2, 2, 2),
    ("consumer-timeout", 1000, 5000, 1000, 1000),
    ("overflow", "reject-publish", "drop-head", "reject-publish", "drop-head"),
    ("dead-letter-exchange", "mine", "theirs", "mine", "mine"),
    ("dead-letter-routing-key", "mine", "theirs", "mine", "mine"),
])
def test_argument_and_policy_precedence(key: str, argument: Any, policy: Any, classic: Any,
                                        quorum: Any) -> None:
    args = {"x-" + key: argument}
    assert policies.effective_value(args, {key: policy}, "classic", key) == classic
    assert policies.effective_value(args, {key: policy}, "quorum", key) == quorum
    # either alone is what applies
    assert policies.effective_value({}, {key: policy}, "classic", key) == policy
    assert policies.effective_value(args, {}, "classic", key) == argument


def test_stream_retention_from_a_policy_wins_over_the_arguments() -> None:
    applied = policies.Applied(None, None, {"max-age": "1h", "max-length-bytes": 100})
    args = policies.queue_args_for("s", "/", {"x-queue-type": "stream", "x-max-age": "7D",
                                              "x-max-length-bytes": 5000}, applied)
    assert (args.max_age, args.max_length_bytes) == ("1h", 100)
    plain = policies.queue_args_for("s", "/", {"x-queue-type": "stream", "x-max-age": "7D"},
                                    policies.NONE)
    assert (plain.max_age, plain.max_length_bytes) == ("7D", None)


def test_alternate_exchange_argument_wins() -> None:
    applied = policies.Applied(None, None, {"alternate-exchange": "from-policy"})
    assert policies.alternate_of({"alternate-exchange": "own"}, applied) == "own"
    assert policies.alternate_of({}, applied) == "from-policy"
    assert policies.alternate_of({}, policies.NONE) is None


# --- validation: RabbitMQ 3.10.8's texts -------------------------------------------------
@pytest.mark.parametrize(("definition", "text"), [
    ({"message-ttl": -1}, "-1 is not a valid message TTL"),
    ({"message-ttl": "x"}, '&lt;&lt;"x"&gt;&gt; is not a valid message TTL'),
    ({"expires": 0}, "0 is not a valid queue expiry"),
    ({"max-length": -1, "message-ttl": -1}, "-1 is not a valid maximum length"),
    ({"max-length-bytes": -1}, "-1 is not a valid maximum length in bytes"),
    ({"overflow": "x"}, '&lt;&lt;"x"&gt;&gt; is not a valid overflow value'),
    ({"queue-mode": "x"}, '&lt;&lt;"x"&gt;&gt; is not a valid queue-mode value'),
    ({"delivery-limit": "x"}, '&lt;&lt;"x"&gt;&gt; is not a valid delivery limit'),
    ({"dead-letter-exchange": 1}, "1 is not a valid dead letter exchange name"),
    ({"dead-letter-routing-key": 1}, "1 is not a valid dead letter routing key"),
    ({"alternate-exchange": 1}, "1 is not a valid alternate exchange name"),
    ({"consumer-timeout": -5}, "-5 is not a valid consumer timeout"),
    ({"zzz": 1, "max-length": -1}, "-1 is not a valid maximum length"),
    ({"foo": 1, "bar": "x"}, '[{&lt;&lt;"bar"&gt;&gt;,&lt;&lt;"x"&gt;&gt;},'
                             '{&lt;&lt;"foo"&gt;&gt;,1}] are not recognised policy settings'),
    ({}, "no policy provided"),
])
def test_definition_texts(definition: dict[str, Any], text: str) -> None:
    with pytest.raises(policies.PolicyError) as caught:
        policies.check_definition(definition)
    assert str(caught.value) == text


def test_operator_policy_keys_and_texts() -> None:
    policies.check_definition({"max-length": 1, "expires": 5, "delivery-limit": 2},
                              operator=True)
    with pytest.raises(policies.PolicyError) as caught:
        policies.check_definition({"overflow": "drop-head", "queue-mode": "lazy"},
                                  operator=True)
    assert str(caught.value) == ('[{<<"overflow">>,<<"drop-head">>},{<<"queue-mode">>,'
                                 '<<"lazy">>}] are not recognised policy settings')
    with pytest.raises(policies.PolicyError) as caught:
        policies.check_definition({"message-ttl": "x"}, operator=True)
    assert str(caught.value) == '<<"x">> is not a valid message TTL'


def test_management_api_refuses_bad_policies_with_400() -> None:
    api = ApiClient(create_app(make_broker()))
    r = api.put("/api/policies/%2F/p", json={"pattern": "^a",
                                              "definition": {"max-length": -1}})
    assert (r.status_code, r.json()) == (400, {
        "error": "bad_request",
        "reason": "Validation failed\n\n-1 is not a valid maximum length\n"})
    r = api.put("/api/operator-policies/%2F/p", json={"pattern": "^a",
                                                       "definition": {"ha-mode": "all"}})
    assert r.status_code == 400
    assert r.json()["reason"] == ('Validation failed\n\n[{<<"ha-mode">>,<<"all">>}] are '
                                  'not recognised policy settings\n')


# --- in process: effect on queues and exchanges -------------------------------------------
def _client(broker: Broker) -> Client:
    c = Client(broker)
    c.open_channel(1)
    return c


def _declare(c: Client, name: str, **arguments: Any) -> None:
    c.send(commands.Queue.Declare(queue=name, arguments=arguments), 1)
    got = c.frames()
    assert any(isinstance(v, commands.Queue.DeclareOk) for _, v in got), got


def _set(broker: Broker, name: str, definition: dict[str, Any], pattern: str = "^q",
         priority: int = 0, apply_to: str = "all", operator: bool = False) -> None:
    value = {"pattern": pattern, "apply-to": apply_to, "definition": definition,
             "priority": priority}
    if operator:
        broker.runtime.set_parameter({"vhost": "/", "component": "operator_policy",
                                      "name": name, "value": value})
    else:
        broker.runtime.set_policy({"vhost": "/", "name": name, **value})


def test_policy_set_and_cleared_on_a_live_queue() -> None:
    broker = make_broker()
    c = _client(broker)
    _declare(c, "dead")
    _declare(c, "q1", **{"x-max-length": 10})
    for i in range(8):
        c.publish(1, "", "q1", b"m%d" % i)
    q = broker.vhosts["/"].queues["q1"]
    assert q.message_count == 8
    # a lower max-length from a policy drops the head, dead-lettered by the policy's DLX
    _set(broker, "cap", {"max-length": 3, "dead-letter-exchange": "",
                         "dead-letter-routing-key": "dead"})
    assert (q.message_count, q.args.max_length) == (3, 3)
    assert broker.vhosts["/"].queues["dead"].message_count == 5
    assert q.applied.policy_name == "cap"
    # the operator policy's lower value wins
    _set(broker, "ops", {"max-length": 2}, operator=True)
    assert (q.message_count, q.args.max_length) == (2, 2)
    assert q.applied.definition == {"dead-letter-exchange": "", "dead-letter-routing-key":
                                    "dead", "max-length": 2}
    broker.runtime.clear_policy("/", "cap")
    broker.runtime.clear_parameter("/", "operator_policy", "ops")
    # effect gone: the queue's own argument again, messages kept
    assert (q.args.max_length, q.args.dead_letter_exchange, q.message_count) == (10, None, 2)
    assert q.applied == policies.NONE
    for i in range(5):
        c.publish(1, "", "q1", b"n%d" % i)
    assert q.message_count == 7


def test_policy_applies_to_a_queue_declared_after_it() -> None:
    broker = make_broker()
    _set(broker, "ttl", {"message-ttl": 0, "max-length": 50}, pattern="^q")
    c = _client(broker)
    _declare(c, "q-new", **{"x-max-length": 2})
    _declare(c, "other")
    q = broker.vhosts["/"].queues["q-new"]
    assert (q.args.message_ttl, q.args.max_length) == (0, 2)  # the lower of the two
    assert broker.vhosts["/"].queues["other"].args.message_ttl is None
    c.publish(1, "", "q-new", b"gone")
    assert q.message_count == 0  # expired at once (TTL 0)
    # the queue's arguments as declared stay what the API and redeclares see
    assert q.arguments == {"x-max-length": 2}
    _declare(c, "q-new", **{"x-max-length": 2})


def test_reject_publish_overflow_from_a_policy_refuses_publishes() -> None:
    broker = make_broker()
    c = _client(broker)
    c.send(commands.Confirm.Select(), 1)
    c.frames()
    _declare(c, "q2")
    _set(broker, "full", {"max-length": 1, "overflow": "reject-publish"})
    c.publish(1, "", "q2", b"a")
    c.publish(1, "", "q2", b"b")
    kinds = [type(v).__name__ for _, v in c.frames()]
    assert kinds == ["Ack", "Nack"]
    broker.runtime.clear_policy("/", "full")
    assert broker.vhosts["/"].refusing_queues == 0
    c.publish(1, "", "q2", b"c")
    assert [type(v).__name__ for _, v in c.frames()] == ["Ack"]


def test_expires_from_a_policy_deletes_an_unused_queue() -> None:
    broker = make_broker()
    c = _client(broker)
    _declare(c, "q-idle")
    q = broker.vhosts["/"].queues["q-idle"]
    _set(broker, "exp", {"expires": 1000})
    assert q in broker.vhosts["/"].expiring_queues
    now = time.monotonic()
    broker.sweep(now)
    assert not q.deleted  # the expiry timer restarted when the policy applied
    broker.sweep(now + 5)
    assert q.deleted and "q-idle" not in broker.vhosts["/"].queues


def test_alternate_exchange_from_a_policy() -> None:
    broker = make_broker()
    c = _client(broker)
    _declare(c, "q-alt")
    c.send(commands.Exchange.Declare(exchange="x-in", exchange_type="direct"), 1)
    c.send(commands.Exchange.Declare(exchange="x-alt", exchange_type="fanout"), 1)
    c.send(commands.Queue.Bind(queue="q-alt", exchange="x-alt"), 1)
    c.frames()
    _set(broker, "ae", {"alternate-exchange": "x-alt"}, pattern="^x-in$", apply_to="exchanges")
    c.publish(1, "x-in", "nowhere", b"unroutable")
    q = broker.vhosts["/"].queues["q-alt"]
    assert q.message_count == 1
    ex = broker.vhosts["/"].exchanges["x-in"]
    assert ex.applied.policy_name == "ae"
    broker.runtime.clear_policy("/", "ae")
    c.publish(1, "x-in", "nowhere", b"dropped")
    assert q.message_count == 1 and ex.alternate is None


def test_policies_in_the_management_json() -> None:
    broker = make_broker()
    api = ApiClient(create_app(broker))
    assert api.put("/api/policies/%2F/p1", json={
        "pattern": "^q", "definition": {"max-length": 5, "message-ttl": 60000},
        "priority": 1, "apply-to": "queues"}).status_code == 201
    assert api.put("/api/operator-policies/%2F/op", json={
        "pattern": "^q", "definition": {"max-length": 3, "expires": 600000},
        "apply-to": "queues"}).status_code == 201
    assert api.put("/api/queues/%2F/q1", json={"arguments": {"x-max-length": 10}}
                   ).status_code == 201
    assert api.put("/api/queues/%2F/other", json={}).status_code == 201
    assert api.put("/api/exchanges/%2F/q-x", json={"type": "fanout"}).status_code == 201
    shown = api.get("/api/queues/%2F/q1").json()
    # as RabbitMQ 3.10.8 showed the same set-up
    assert (shown["policy"], shown["operator_policy"], shown["effective_policy_definition"],
            shown["arguments"]) == ("p1", "op", {"expires": 600000, "max-length": 3,
                                                 "message-ttl": 60000}, {"x-max-length": 10})
    other = api.get("/api/queues/%2F/other").json()
    assert (other["policy"], other["operator_policy"],
            other["effective_policy_definition"]) == (None, None, {})
    assert "policy" not in api.get("/api/exchanges/%2F/q-x").json()  # apply-to queues
    assert api.put("/api/policies/%2F/px", json={
        "pattern": "^q-x$", "definition": {"alternate-exchange": "amq.fanout"},
        "apply-to": "exchanges"}).status_code == 201
    assert api.get("/api/exchanges/%2F/q-x").json()["policy"] == "px"
    assert broker.vhosts["/"].queues["q1"].args.max_length == 3


# --- definitions --------------------------------------------------------------------------
def _doc(**sections: Any) -> dict[str, Any]:
    return {"vhosts": [{"name": "/"}], **sections}


def test_imported_policies_take_effect() -> None:
    broker = make_broker()
    import_definitions(broker, _doc(
        policies=[{"vhost": "/", "name": "cap", "pattern": "^imp", "apply-to": "queues",
                   "definition": {"max-length": 4}, "priority": 0}],
        parameters=[{"vhost": "/", "component": "operator_policy", "name": "op",
                     "value": {"pattern": "^imp", "apply-to": "queues", "priority": 0,
                               "definition": [["message-ttl", 1000]]}}],
        queues=[{"name": "imported", "vhost": "/", "durable": True, "auto_delete": False,
                 "arguments": {}}]))
    q = broker.vhosts["/"].queues["imported"]
    assert (q.args.max_length, q.args.message_ttl) == (4, 1000)
    assert (q.applied.policy_name, q.applied.operator_name) == ("cap", "op")


@pytest.mark.parametrize(("section", "entry", "text"), [
    ("policies", {"vhost": "/", "name": "p", "pattern": "^a", "definition": {"max-length": -1}},
     "invalid definition: -1 is not a valid maximum length"),
    ("policies", {"vhost": "/", "name": "p", "pattern": "^a", "definition": {"nope": 1}},
     'invalid definition: [{<<"nope">>,1}] are not recognised policy settings'),
    ("parameters", {"vhost": "/", "component": "operator_policy", "name": "op",
                    "value": {"pattern": "^a", "definition": {"overflow": "drop-head"}}},
     'invalid definition: [{<<"overflow">>,<<"drop-head">>}] are not recognised policy '
     "settings"),
])
def test_bad_imported_policies_are_refused(section: str, entry: dict[str, Any],
                                           text: str) -> None:
    broker = make_broker()
    with pytest.raises(DefinitionsError) as caught:
        import_definitions(broker, _doc(**{section: [entry]}))
    assert text in str(caught.value)
    assert not broker.runtime.policies


def test_policies_survive_a_restart(tmp_path: Path) -> None:
    def start() -> Broker:
        b = make_broker(DiskStore(tmp_path))  # type: ignore[arg-type]
        b.recover()
        return b

    broker = start()
    c = _client(broker)
    _declare(c, "q-durable")  # not durable: gone after the restart
    c.send(commands.Queue.Declare(queue="q-kept", durable=True), 1)
    c.frames()
    _set(broker, "cap", {"max-length": 7})
    broker.store.close()
    again = start()
    try:
        q = again.vhosts["/"].queues["q-kept"]
        assert (q.args.max_length, q.applied.policy_name) == (7, "cap")
    finally:
        again.store.close()


# --- per-queue consumer timeout -----------------------------------------------------------
def _get_unacked(c: Client, queue: str) -> None:
    c.publish(1, "", queue, b"work")
    c.send(commands.Basic.Get(queue=queue), 1)
    got = c.frames()
    assert any(isinstance(v, commands.Basic.GetOk) for _, v in got), got


def _closed_text(c: Client) -> str | None:
    for _, v in c.frames():
        if isinstance(v, commands.Channel.Close):
            assert v.reply_code == 406
            return str(v.reply_text)
    return None


@pytest.mark.parametrize("how", ["argument", "policy"])
def test_queue_consumer_timeout_overrides_the_broker_wide_one(how: str) -> None:
    broker = make_broker(consumer_timeout=1800)
    c = _client(broker)
    if how == "argument":
        _declare(c, "q-slow", **{"x-consumer-timeout": 1000})
    else:
        _set(broker, "ct", {"consumer-timeout": 1000})
        _declare(c, "q-slow")
    ch = c.conn.channels[1]
    now = time.monotonic()
    c.conn.check_consumer_timeouts(now, 1800)  # marks "nothing unacked" now
    _get_unacked(c, "q-slow")
    c.conn.check_consumer_timeouts(now + 0.5, 1800)
    assert _closed_text(c) is None and ch.unacked
    c.conn.check_consumer_timeouts(now + 2, 1800)
    assert _closed_text(c) == ("PRECONDITION_FAILED - delivery acknowledgement on channel 1 "
                               "timed out. Timeout "
                               "value used: 1000 ms. This timeout value can be configured, "
                               "see consumers doc guide to learn more")
    q = broker.vhosts["/"].queues["q-slow"]
    assert q.message_count == 1 and q.redelivered  # requeued


def test_queue_consumer_timeout_applies_with_no_broker_wide_timeout() -> None:
    broker = make_broker(consumer_timeout=0)
    c = _client(broker)
    _declare(c, "q-slow", **{"x-consumer-timeout": 1000})
    _declare(c, "q-free")
    now = time.monotonic()
    c.conn.check_consumer_timeouts(now, 0)
    _get_unacked(c, "q-free")
    c.conn.check_consumer_timeouts(now + 100, 0)
    assert _closed_text(c) is None  # no timeout for that queue
    c.send(commands.Basic.Ack(delivery_tag=1), 1)
    c.conn.check_consumer_timeouts(now + 101, 0)
    _get_unacked(c, "q-slow")
    c.conn.check_consumer_timeouts(now + 103, 0)
    assert "Timeout value used: 1000 ms" in (_closed_text(c) or "")


def test_argument_and_policy_consumer_timeout_lower_wins() -> None:
    broker = make_broker()
    _set(broker, "ct", {"consumer-timeout": 500})
    c = _client(broker)
    _declare(c, "q-both", **{"x-consumer-timeout": 1000})
    assert broker.vhosts["/"].queues["q-both"].args.consumer_timeout == 500


@pytest.mark.parametrize(("value", "reason"), [
    (-1, "{value_negative,-1}"),
    ("soon", '"expected integer, got longstr"'),
])
def test_bad_consumer_timeout_argument_is_406(value: Any, reason: str) -> None:
    broker = make_broker()
    c = _client(broker)
    c.send(commands.Queue.Declare(queue="q-bad", arguments={"x-consumer-timeout": value}), 1)
    close = [v for _, v in c.frames() if isinstance(v, commands.Channel.Close)]
    assert close and close[0].reply_code == 406
    assert close[0].reply_text == ("PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' "
                                   f"for queue 'q-bad' in "
                                   f"vhost '/': {reason}")


# --- end to end: a broker process, pika and the management API ----------------------------
@pytest.fixture
def live(tmp_path: Path) -> Any:
    proc = BrokerProcess(data_dir=tmp_path / "data", log_path=tmp_path / "broker.log",
                         management_port=free_port())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _http(proc: BrokerProcess) -> httpx.Client:
    return httpx.Client(base_url=proc.management_url, auth=("guest", "guest"), timeout=10)


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_end_to_end_policy_through_the_api(live: BrokerProcess, uid: str) -> None:
    q, dead = f"pol-{uid}", f"pol-dead-{uid}"
    conn = pika_connect(live.port)
    ch = conn.channel()
    ch.queue_declare(dead)
    ch.queue_declare(q)
    with _http(live) as http:
        r = http.put(f"/api/policies/%2F/cap-{uid}", json={
            "pattern": f"^pol-{uid}$", "apply-to": "queues", "definition": {
                "max-length": 2, "message-ttl": 300, "dead-letter-exchange": "",
                "dead-letter-routing-key": dead}})
        assert r.status_code == 201
        shown = http.get(f"/api/queues/%2F/{q}").json()
        assert shown["policy"] == f"cap-{uid}"
        assert shown["effective_policy_definition"] == {
            "dead-letter-exchange": "", "dead-letter-routing-key": dead, "max-length": 2,
            "message-ttl": 300}
        for i in range(5):
            ch.basic_publish("", q, b"m%d" % i)
        # three pushed out by max-length, then the two left expire: all five dead-lettered
        assert _wait(lambda: ch.queue_declare(dead, passive=True).method.message_count == 5)
        assert ch.queue_declare(q, passive=True).method.message_count == 0
        method, props, _ = ch.basic_get(dead, auto_ack=True)
        assert method is not None and props.headers["x-death"][0]["reason"] == "maxlen"
        assert http.delete(f"/api/policies/%2F/cap-{uid}").status_code == 204
        for i in range(5):
            ch.basic_publish("", q, b"n%d" % i)
        assert _wait(lambda: ch.queue_declare(q, passive=True).method.message_count == 5)
        shown = http.get(f"/api/queues/%2F/{q}").json()
        assert (shown["policy"], shown["effective_policy_definition"]) == (None, {})
    ch.queue_delete(q)
    ch.queue_delete(dead)
    conn.close()


@pytest.mark.parametrize("how", ["argument", "policy"])
def test_end_to_end_queue_consumer_timeout(live: BrokerProcess, uid: str, how: str) -> None:
    q = f"slow-{uid}"
    conn = pika_connect(live.port)
    ch = conn.channel()
    if how == "policy":
        with _http(live) as http:
            assert http.put(f"/api/policies/%2F/ct-{uid}", json={
                "pattern": f"^{q}$", "definition": {"consumer-timeout": 1000}}
                ).status_code == 201
        ch.queue_declare(q)
    else:
        ch.queue_declare(q, arguments={"x-consumer-timeout": 1000})
    ch.basic_publish("", q, b"work")
    method, _props, _body = ch.basic_get(q, auto_ack=False)
    assert method is not None
    reasons: list[Any] = []
    ch._impl.add_on_close_callback(lambda _ch, reason: reasons.append(reason))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ch.is_open:
        conn.process_data_events(time_limit=0.2)
    assert ch.is_closed, "channel still open after the queue's consumer timeout"
    assert isinstance(reasons[0], pika.exceptions.ChannelClosedByBroker)
    assert reasons[0].reply_code == 406
    assert "Timeout value used: 1000 ms" in reasons[0].reply_text
    ch2 = conn.channel()
    again = ch2.basic_get(q, auto_ack=True)
    assert again[0] is not None and again[0].redelivered
    ch2.queue_delete(q)
    conn.close()


def test_end_to_end_ctl_import_of_a_policy(live: BrokerProcess, uid: str,
                                           tmp_path: Path) -> None:
    q = f"ctl-{uid}"
    doc = {"policies": [{"vhost": "/", "name": f"ctl-{uid}", "pattern": f"^{q}$",
                         "apply-to": "queues", "definition": {"max-length": 1},
                         "priority": 0}]}
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(doc))
    conn = pika_connect(live.port)
    ch = conn.channel()
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    assert port_open(live.management_port)
    done = subprocess.run([sys.executable, "-m", "amqp_broker", "ctl", "--url",
                           live.management_url, "import-definitions", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert _wait(lambda: ch.queue_declare(q, passive=True).method.message_count == 1)
    ch.queue_delete(q)
    conn.close()
