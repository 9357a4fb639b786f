"""Dead-letter cycles and long dead-letter chains, in-process (RabbitMQ's x-death rule)."""

from __future__ import annotations

from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.deadletter import EXPIRED, MAXLEN, REJECTED, is_cycle

from inproc import Client, make_broker, of_type


def _client() -> tuple[Broker, Client]:
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    return broker, c


def _declare(c: Client, name: str, **arguments: object) -> None:
    c.send(commands.Queue.Declare(queue=name, arguments=arguments), 1)
    assert of_type(c.frames(), commands.Queue.DeclareOk), name


def _bodies(broker: Broker, name: str) -> list[bytes]:
    return [m.body for m in broker.vhosts["/"].queues[name].ready]


def test_two_full_queues_dead_lettering_into_each_other_keep_one_message_each() -> None:
    broker, c = _client()
    _declare(c, "cyc-a", **{"x-max-length": 1, "x-dead-letter-exchange": "",
                            "x-dead-letter-routing-key": "cyc-b"})
    _declare(c, "cyc-b", **{"x-max-length": 1, "x-dead-letter-exchange": "",
                            "x-dead-letter-routing-key": "cyc-a"})
    for i in range(5):
        c.publish(1, "", "cyc-a", b"m%d" % i)
    assert not of_type(c.frames(), (commands.Channel.Close, commands.Connection.Close))
    # as RabbitMQ: the newest in a, the one it pushed out in b; older ones died in a cycle
    assert _bodies(broker, "cyc-a") == [b"m4"]
    assert _bodies(broker, "cyc-b") == [b"m3"]


def test_a_long_dead_letter_chain_does_not_recurse() -> None:
    broker, c = _client()
    n = 600  # deeper than Python's recursion limit allows for a recursive republish
    for i in range(n):
        args: dict[str, object] = {"x-max-length": 1}
        if i + 1 < n:
            args.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"ch-{i + 1}"})
        _declare(c, f"ch-{i}", **args)
    for i in range(n):
        c.publish(1, "", f"ch-{i}", b"old-%d" % i)
    c.publish(1, "", "ch-0", b"new")  # pushes every queue's message one step down the chain
    assert not of_type(c.frames(), (commands.Channel.Close, commands.Connection.Close))
    assert _bodies(broker, "ch-0") == [b"new"]
    assert _bodies(broker, "ch-1") == [b"old-0"]
    assert _bodies(broker, f"ch-{n - 1}") == [b"old-%d" % (n - 2)]


def test_cycle_rule_follows_rabbitmq() -> None:
    a_max = {"queue": "a", "reason": MAXLEN}
    b_exp = {"queue": "b", "reason": EXPIRED}
    a_rej = {"queue": "a", "reason": REJECTED}
    assert is_cycle("a", [a_max])  # straight back into the queue it died in
    assert is_cycle("a", [b_exp, a_max])  # a -> b -> a, all automatic
    assert not is_cycle("a", [b_exp, a_rej])  # a client rejected it in a: not a cycle
    assert not is_cycle("c", [b_exp, a_max])  # never died in c


def test_a_rejected_message_may_come_back_to_its_queue() -> None:
    broker, c = _client()
    _declare(c, "rj", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "rj"})
    c.publish(1, "", "rj", b"again")
    c.send(commands.Basic.Get(queue="rj"), 1)
    (_, ok), = of_type(c.frames(), commands.Basic.GetOk)
    c.send(commands.Basic.Reject(delivery_tag=ok.delivery_tag, requeue=False), 1)
    assert _bodies(broker, "rj") == [b"again"]


def test_dead_letters_respect_the_target_queues_overflow_policy() -> None:
    # RabbitMQ 3.10 (checked): a full reject-publish queue refuses dead letters too
    broker, c = _client()
    _declare(c, "dl-full", **{"x-max-length": 1, "x-overflow": "reject-publish"})
    _declare(c, "dl-src", **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dl-full"})
    for i in range(3):
        c.publish(1, "", "dl-src", b"m%d" % i)
    for _ in range(3):
        c.send(commands.Basic.Get(queue="dl-src"), 1)
        (_, ok), = of_type(c.frames(), commands.Basic.GetOk)
        c.send(commands.Basic.Reject(delivery_tag=ok.delivery_tag, requeue=False), 1)
    assert not of_type(c.frames(), (commands.Channel.Close, commands.Connection.Close))
    assert _bodies(broker, "dl-full") == [b"m0"]
