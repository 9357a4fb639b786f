"""Permissions in every handler, in process: each method that needs a permission is
refused with 403 and RabbitMQ's text without it, and allowed with only the permissions
it needs (rabbit_channel's checks); vhost access at connection.open; topic permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.connection import Connection
from amqp_broker.users import User

from inproc import PROTOCOL_HEADER, Client, make_broker, of_type

NOTHING = "^$"
Action = Callable[[Client], None]


def _broker() -> Broker:
    broker = make_broker()
    admin = Client(broker)
    admin.open_channel(1)
    for name, kind in (("ex", "direct"), ("src", "direct"), ("dst", "fanout"),
                       ("topics", "topic"), ("alt", "fanout"), ("dlx", "fanout")):
        admin.send(commands.Exchange.Declare(exchange=name, exchange_type=kind), 1)
    admin.send(commands.Queue.Declare(queue="q"), 1)
    admin.send(commands.Queue.Bind(queue="q", exchange="ex", routing_key="k"), 1)
    admin.send(commands.Exchange.Bind(destination="dst", source="src", routing_key="k"), 1)
    admin.publish(1, "", "q", b"m")
    admin.frames()
    broker.access.put_user(User.with_password("u", "pw"))
    return broker


def _as_user(broker: Broker, configure: str, write: str, read: str) -> Client:
    broker.access.set_permissions("u", "/", configure, write, read)
    c = Client(broker, user="u", password="pw")
    c.open_channel(1)
    return c


# (action, the reply that means it was allowed, the permissions it needs as
#  (perm, kind, name)); the first needed permission missing is the one refused
CASES: dict[str, tuple[Action, type, list[tuple[str, str, str]]]] = {
    "exchange.declare": (
        lambda c: c.send(commands.Exchange.Declare(exchange="new-x", exchange_type="direct"),
                         1),
        commands.Exchange.DeclareOk, [("configure", "exchange", "new-x")]),
    "exchange.declare with an alternate": (
        lambda c: c.send(commands.Exchange.Declare(
            exchange="new-x", exchange_type="direct",
            arguments={"alternate-exchange": "alt"}), 1),
        commands.Exchange.DeclareOk,
        [("configure", "exchange", "new-x"), ("read", "exchange", "new-x"),
         ("write", "exchange", "alt")]),
    "exchange.delete": (
        lambda c: c.send(commands.Exchange.Delete(exchange="ex"), 1),
        commands.Exchange.DeleteOk, [("configure", "exchange", "ex")]),
    "exchange.bind": (
        lambda c: c.send(commands.Exchange.Bind(destination="dst", source="ex",
                                                routing_key="r"), 1),
        commands.Exchange.BindOk, [("write", "exchange", "dst"), ("read", "exchange", "ex")]),
    "exchange.unbind": (
        lambda c: c.send(commands.Exchange.Unbind(destination="dst", source="src",
                                                  routing_key="k"), 1),
        commands.Exchange.UnbindOk, [("write", "exchange", "dst"), ("read", "exchange", "src")]),
    "queue.declare": (
        lambda c: c.send(commands.Queue.Declare(queue="new-q"), 1),
        commands.Queue.DeclareOk, [("configure", "queue", "new-q")]),
    "queue.declare with a dead-letter exchange": (
        lambda c: c.send(commands.Queue.Declare(
            queue="new-q", arguments={"x-dead-letter-exchange": "dlx"}), 1),
        commands.Queue.DeclareOk,
        [("configure", "queue", "new-q"), ("read", "queue", "new-q"),
         ("write", "exchange", "dlx")]),
    "queue.bind": (
        lambda c: c.send(commands.Queue.Bind(queue="q", exchange="src", routing_key="r"), 1),
        commands.Queue.BindOk, [("write", "queue", "q"), ("read", "exchange", "src")]),
    "queue.unbind": (
        lambda c: c.send(commands.Queue.Unbind(queue="q", exchange="ex", routing_key="k"), 1),
        commands.Queue.UnbindOk, [("write", "queue", "q"), ("read", "exchange", "ex")]),
    "queue.purge": (
        lambda c: c.send(commands.Queue.Purge(queue="q"), 1),
        commands.Queue.PurgeOk, [("read", "queue", "q")]),
    "queue.delete": (
        lambda c: c.send(commands.Queue.Delete(queue="q"), 1),
        commands.Queue.DeleteOk, [("configure", "queue", "q")]),
    "basic.get": (
        lambda c: c.send(commands.Basic.Get(queue="q", no_ack=True), 1),
        commands.Basic.GetOk, [("read", "queue", "q")]),
    "basic.consume": (
        lambda c: c.send(commands.Basic.Consume(queue="q", no_ack=True), 1),
        commands.Basic.ConsumeOk, [("read", "queue", "q")]),
    "basic.publish": (
        lambda c: (c.send(commands.Confirm.Select(), 1), c.publish(1, "ex", "k", b"x")),
        commands.Basic.Ack, [("write", "exchange", "ex")]),
    "basic.publish to the default exchange": (
        lambda c: (c.send(commands.Confirm.Select(), 1), c.publish(1, "", "q", b"x")),
        commands.Basic.Ack, [("write", "exchange", "amq.default")]),
}


def _patterns(needed: list[tuple[str, str, str]], missing: str | None) -> dict[str, str]:
    """Expressions granting exactly the needed names (all names of a kind-less regex:
    anchored alternatives), with `missing` granting nothing."""
    names: dict[str, list[str]] = {"configure": [], "write": [], "read": []}
    for perm, _kind, name in needed:
        names[perm].append(name)
    out = {perm: ("^(" + "|".join(n.replace(".", r"\.") for n in ns) + ")$") if ns
           else NOTHING for perm, ns in names.items()}
    if missing is not None:
        out[missing] = NOTHING
    return out


def _outcome(c: Client) -> Any:
    frames = c.frames()
    closes = of_type(frames, commands.Channel.Close)
    if closes:
        return closes[0][1]
    return [v for _, v in frames]


@pytest.mark.parametrize("case", sorted(CASES))
def test_allowed_with_exactly_the_permissions_it_needs(case: str) -> None:
    action, ok, needed = CASES[case]
    broker = _broker()
    c = _as_user(broker, **_patterns(needed, None))
    action(c)
    got = _outcome(c)
    assert not isinstance(got, commands.Channel.Close), (case, got.reply_text)
    assert any(isinstance(v, ok) for v in got), (case, got)


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_without_each_permission_it_needs(case: str) -> None:
    action, _ok, needed = CASES[case]
    for index, (perm, _kind, _name) in enumerate(needed):
        broker = _broker()
        granted = _patterns(needed, perm)
        # keep the earlier checks passing; a later need for the same perm is refused too
        c = _as_user(broker, **granted)
        action(c)
        got = _outcome(c)
        assert isinstance(got, commands.Channel.Close), (case, perm, got)
        assert got.reply_code == 403
        first = next(n for n in needed if n[0] == perm)
        assert got.reply_text == (f"ACCESS_REFUSED - access to {first[1]} '{first[2]}' in "
                                  f"vhost '/' refused for user 'u'"), (case, index)


def test_passive_declares_need_no_permission() -> None:
    broker = _broker()
    c = _as_user(broker, NOTHING, NOTHING, NOTHING)
    c.send(commands.Queue.Declare(queue="q", passive=True), 1)
    c.send(commands.Exchange.Declare(exchange="ex", passive=True), 1)
    got = [v for _, v in c.frames()]
    assert [type(v) for v in got] == [commands.Queue.DeclareOk, commands.Exchange.DeclareOk]


def test_server_named_queue_is_checked_under_its_generated_name() -> None:
    broker = _broker()
    c = _as_user(broker, r"^amq\.gen-", NOTHING, NOTHING)
    c.send(commands.Queue.Declare(queue="", exclusive=True), 1)
    (ok,) = [v for _, v in c.frames()]
    assert isinstance(ok, commands.Queue.DeclareOk) and ok.queue.startswith("amq.gen-")


def test_connection_open_without_permissions_in_the_vhost_is_530() -> None:
    broker = _broker()
    broker.add_vhost("other")
    broker.access.set_permissions("u", "/", ".*", ".*", ".*")
    c = Client.__new__(Client)
    c.conn = Connection(broker, ("127.0.0.1", 1))
    c.conn.receive(PROTOCOL_HEADER)
    c.send(commands.Connection.StartOk(mechanism="PLAIN", response="\x00u\x00pw"))
    c.send(commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    c.send(commands.Connection.Open(virtual_host="other"))
    closes = of_type(c.frames(), commands.Connection.Close)
    assert closes and closes[0][1].reply_code == 530
    assert closes[0][1].reply_text == \
        "NOT_ALLOWED - access to vhost 'other' refused for user 'u'"


def test_topic_permissions_on_publish_and_bind() -> None:
    broker = _broker()
    broker.access.set_topic_permissions("u", "/", "topics", "^orders\\.", "^audit\\.")
    c = _as_user(broker, ".*", ".*", ".*")
    c.send(commands.Confirm.Select(), 1)
    c.publish(1, "topics", "orders.new", b"x")
    assert of_type(c.frames(), commands.Basic.Ack)
    c.publish(1, "topics", "payments.new", b"x")
    (close,) = [v for _, v in of_type(c.frames(), commands.Channel.Close)]
    assert close.reply_code == 403
    assert close.reply_text == ("ACCESS_REFUSED - access to topic 'payments.new' in exchange "
                                "'topics' in vhost '/' refused for user 'u'")
    c.send(commands.Channel.CloseOk(), 1)
    c.open_channel(2)
    c.send(commands.Queue.Bind(queue="q", exchange="topics", routing_key="audit.#"), 2)
    assert of_type(c.frames(), commands.Queue.BindOk)
    c.send(commands.Queue.Bind(queue="q", exchange="topics", routing_key="orders.#"), 2)
    (close,) = [v for _, v in of_type(c.frames(), commands.Channel.Close)]
    assert close.reply_code == 403


def test_user_id_must_be_the_login_unless_impersonator() -> None:
    broker = _broker()
    c = _as_user(broker, ".*", ".*", ".*")
    c.publish(1, "", "q", b"x", user_id="someone-else")
    (close,) = [v for _, v in of_type(c.frames(), commands.Channel.Close)]
    assert close.reply_code == 406
    broker.access.put_user(User.with_password("u", "pw", tags=("impersonator",)))
    c = _as_user(broker, ".*", ".*", ".*")
    c.send(commands.Confirm.Select(), 1)
    c.publish(1, "", "q", b"x", user_id="someone-else")
    assert of_type(c.frames(), commands.Basic.Ack)


def test_a_permission_change_applies_to_open_connections() -> None:
    broker = _broker()
    c = _as_user(broker, ".*", ".*", ".*")
    c.send(commands.Basic.Get(queue="q", no_ack=True), 1)
    assert of_type(c.frames(), commands.Basic.GetOk)
    broker.access.set_permissions("u", "/", ".*", ".*", NOTHING)
    c.send(commands.Basic.Get(queue="q", no_ack=True), 1)
    (close,) = [v for _, v in of_type(c.frames(), commands.Channel.Close)]
    assert close.reply_code == 403


def test_system_exchanges_cannot_be_deleted() -> None:
    c = Client(make_broker())
    c.open_channel(1)
    c.send(commands.Exchange.Delete(exchange="amq.direct"), 1)
    (close,) = [v for _, v in of_type(c.frames(), commands.Channel.Close)]
    assert (close.reply_code, close.reply_text) == (
        403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed")
