"""Policies with effect: a policy and an operator policy set through the management API
change what a queue declared over AMQP does (length limit, dead-lettering), which of
argument and policy wins, what the API shows (policy, operator_policy,
effective_policy_definition), an alternate exchange from a policy, and clearing them.
Patterns are anchored on the run's own names, so the shared reference is not touched."""

from __future__ import annotations

import re
import time

from ..ctx import pump
from ..registry import scenario
from ._mgmt import q

G = "policies"


def _put(ctx, kind: str, name: str, body: dict) -> None:
    status, reply = ctx.api("PUT", f"/api/{kind}/%2F/{q(name)}", body)
    ctx.log(f"put_{kind}", status=status, body=reply)
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/{kind}/%2F/{q(name)}"))


def _count(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def _shown(ctx, path: str, keys: tuple[str, ...], want: dict | None = None) -> dict:
    """The object's JSON once RabbitMQ's management database has it (the queue's record
    reaches the API some seconds after the declare) and, with want, shows those values."""
    body: dict = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, body = ctx.api("GET", path)
        if status == 200 and all(k in body for k in keys) and (
                want is None or all(body.get(k) == v for k, v in want.items())):
            break
        time.sleep(0.25)
    return {k: body.get(k) for k in keys}


@scenario(G, timeout=60)
def queue_policy_effect(ctx):
    """A policy (max-length 2, dead-letter to a queue) and an operator policy
    (max-length 1, expires) on queues of this run: the lower max-length applies, the
    pushed-out messages are dead-lettered through the policy's DLX; a queue argument
    dead-letter-routing-key wins over the policy's; the API shows both policies and the
    merged definition; cleared, the queue's own x-max-length applies again."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    prefix = ctx.name("pq")
    dead, own_dead = ctx.queue(ch, "dead"), ctx.queue(ch, "own-dead")
    pattern = "^" + re.escape(prefix)
    _put(ctx, "policies", ctx.name("pol"), {
        "pattern": pattern, "apply-to": "queues", "priority": 1, "definition": {
            "max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": dead}})
    pump(conn, 0.3)
    main = ctx.queue(ch, "pq.main", arguments={"x-max-length": 5})
    own = ctx.queue(ch, "pq.own", arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": own_dead})
    pump(conn, 0.3)
    for i in range(4):
        ch.basic_publish("", main, b"m%d" % i)
        ch.basic_publish("", own, b"o%d" % i)
    ctx.log("with_policy", main=_count(ch, main), dead=_count(ch, dead),
            own=_count(ch, own), own_dead=_count(ch, own_dead))
    shown = _shown(ctx, f"/api/queues/%2F/{q(main)}",
                   ("policy", "operator_policy", "effective_policy_definition", "arguments"),
                   {"policy": ctx.name("pol")})
    ctx.log("api_with_policy", **shown)
    _put(ctx, "operator-policies", ctx.name("op"), {
        "pattern": pattern, "apply-to": "queues", "definition": {
            "max-length": 1, "expires": 600000}})
    pump(conn, 0.5)
    ch.basic_publish("", main, b"m4")
    ctx.log("with_operator_policy", main=_count(ch, main), dead=_count(ch, dead))
    shown = _shown(ctx, f"/api/queues/%2F/{q(main)}",
                   ("policy", "operator_policy", "effective_policy_definition"),
                   {"operator_policy": ctx.name("op")})
    ctx.log("api_with_operator_policy", **shown)
    for kind, name in (("policies", ctx.name("pol")), ("operator-policies", ctx.name("op"))):
        status, _ = ctx.api("DELETE", f"/api/{kind}/%2F/{q(name)}")
        ctx.log(f"delete_{kind}", status=status)
    pump(conn, 0.5)
    for i in range(5, 10):
        ch.basic_publish("", main, b"m%d" % i)
    ctx.log("cleared", main=_count(ch, main), dead=_count(ch, dead))
    shown = _shown(ctx, f"/api/queues/%2F/{q(main)}",
                   ("policy", "operator_policy", "effective_policy_definition"),
                   {"policy": None, "operator_policy": None})
    ctx.log("api_cleared", **shown)


@scenario(G, timeout=60)
def argument_or_policy(ctx):
    """Which wins: the lower of x-max-length and the policy's max-length (both ways); the
    argument's x-overflow over the policy's overflow (reject-publish nacks a confirm)."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    prefix = ctx.name("ap")
    _put(ctx, "policies", ctx.name("pol"), {
        "pattern": "^" + re.escape(prefix), "apply-to": "all", "definition": {
            "max-length": 3, "overflow": "reject-publish"}})
    pump(conn, 0.3)
    lower_arg = ctx.queue(ch, "ap.lower-arg", arguments={"x-max-length": 1})
    lower_policy = ctx.queue(ch, "ap.lower-policy", arguments={"x-max-length": 10})
    drop_head = ctx.queue(ch, "ap.drop-head", arguments={"x-overflow": "drop-head"})
    pump(conn, 0.3)
    for queue in (lower_arg, lower_policy, drop_head):
        nacked = 0
        for i in range(5):
            try:
                ch.basic_publish("", queue, b"%d" % i)
            except Exception as exc:  # pika's NackError on a refused publish
                nacked += 1
                ctx.log("refused", exc=type(exc).__name__)
        ctx.log("queue", name=queue, count=_count(ch, queue), nacked=nacked)
        first = ch.basic_get(queue, auto_ack=True)[2]
        ctx.log("head", name=queue, body=first)


@scenario(G, timeout=60)
def exchange_policy(ctx):
    """An alternate-exchange from a policy takes the unroutable messages of the exchanges
    it applies to; an exchange's own alternate-exchange argument wins; the API shows the
    exchange's policy; cleared, unroutable messages are dropped again."""
    conn = ctx.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    alt = ctx.exchange(ch, "alt", "fanout")
    own_alt = ctx.exchange(ch, "own-alt", "fanout")
    alt_q, own_alt_q = ctx.queue(ch, "alt-q"), ctx.queue(ch, "own-alt-q")
    ch.queue_bind(alt_q, alt)
    ch.queue_bind(own_alt_q, own_alt)
    prefix = ctx.name("ex")
    _put(ctx, "policies", ctx.name("pol"), {
        "pattern": "^" + re.escape(prefix), "apply-to": "exchanges",
        "definition": {"alternate-exchange": alt}})
    pump(conn, 0.3)
    plain = ctx.exchange(ch, "ex.plain", "direct")
    own = ctx.exchange(ch, "ex.own", "direct", arguments={"alternate-exchange": own_alt})
    pump(conn, 0.3)
    ch.basic_publish(plain, "nowhere", b"p1")
    ch.basic_publish(own, "nowhere", b"o1")
    ctx.log("routed", alt=_count(ch, alt_q), own_alt=_count(ch, own_alt_q))
    shown = _shown(ctx, f"/api/exchanges/%2F/{q(plain)}", ("policy", "arguments"))
    ctx.log("api", **shown)
    status, _ = ctx.api("DELETE", f"/api/policies/%2F/{q(ctx.name('pol'))}")
    ctx.log("delete", status=status)
    pump(conn, 0.5)
    ch.basic_publish(plain, "nowhere", b"p2")
    ctx.log("cleared", alt=_count(ch, alt_q))
    status, body = ctx.api("GET", f"/api/exchanges/%2F/{q(plain)}")
    ctx.log("api_cleared", status=status, has_policy="policy" in body)


@scenario(G)
def validation(ctx):
    """Definitions RabbitMQ refuses, with its texts: bad values of each kind, unknown keys
    (after the values are checked), an empty definition, keys operator policies do not
    take (their text not HTML-escaped), a bad value in an operator policy."""
    name = ctx.name("bad")
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/policies/%2F/{q(name)}"))
    ctx.on_cleanup(lambda: ctx.api("DELETE", f"/api/operator-policies/%2F/{q(name)}"))
    for definition in ({"message-ttl": -1}, {"message-ttl": "x"}, {"expires": 0},
                       {"max-length": -1, "message-ttl": -1}, {"max-length-bytes": 1.5},
                       {"overflow": "x"}, {"queue-mode": "x"}, {"delivery-limit": "x"},
                       {"dead-letter-exchange": 1}, {"dead-letter-routing-key": True},
                       {"alternate-exchange": 1}, {"zzz": 1, "max-length": -1},
                       {"foo": 1, "bar": "x"}, {}):
        status, body = ctx.api("PUT", f"/api/policies/%2F/{q(name)}",
                               {"pattern": "^" + re.escape(name) + "$",
                                "definition": definition})
        ctx.log("policy", definition=definition, status=status, body=body)
    for definition in ({"overflow": "drop-head", "queue-mode": "lazy"},
                       {"dead-letter-exchange": "x"}, {"message-ttl": "x"},
                       {"expires": 1000, "max-length": 5, "delivery-limit": 3}):
        status, body = ctx.api("PUT", f"/api/operator-policies/%2F/{q(name)}",
                               {"pattern": "^" + re.escape(name) + "$",
                                "definition": definition})
        ctx.log("operator_policy", definition=definition, status=status, body=body)
