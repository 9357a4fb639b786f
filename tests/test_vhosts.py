"""Vhosts as runtime objects: created and deleted while running, durable across restarts
with their users and permissions; the default data of a first start; deletion closes
the vhost's connections and removes its exchanges, queues and stored messages."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.definitions import DefinitionsError
from amqp_broker.permissions import FULL
from amqp_broker.storage.disk import DiskStore
from amqp_broker.users import NotFoundError, User

from inproc import Client, make_broker, of_type


def _start(data: Path, **config: object) -> Broker:
    broker = make_broker(DiskStore(data), **config)  # type: ignore[arg-type]
    broker.recover()
    return broker


def _stored_keys(data: Path) -> set[str]:
    store = DiskStore(data)
    try:
        return set(store.open().definitions)
    finally:
        store.close()


def test_first_start_creates_the_default_vhost_and_user(tmp_path: Path) -> None:
    broker = _start(tmp_path)
    guest = broker.access.users["guest"]
    assert guest.tags == ("administrator",) and guest.check_password("guest")
    perm = broker.access.permissions[("guest", "/")]
    assert (perm.configure, perm.write, perm.read) == (FULL, FULL, FULL)
    assert broker.vhost_info["/"].description == "Default virtual host"
    broker.store.close()
    assert {"vhost\x00/", "user\x00guest", "perm\x00/\x00guest"} <= _stored_keys(tmp_path)


def test_configured_default_user_and_vhosts(tmp_path: Path) -> None:
    broker = _start(tmp_path, default_user="admin", default_pass="pw", vhosts=("app",))
    assert set(broker.access.users) == {"admin"}
    assert set(broker.vhosts) == {"/", "app"}
    assert ("admin", "app") in broker.access.permissions
    assert broker.authenticate("admin", "pw", "10.0.0.1") is None
    assert broker.authenticate("admin", "no", "127.0.0.1") == "user 'admin' - invalid credentials"
    broker.store.close()


def test_vhosts_users_and_permissions_survive_a_restart(tmp_path: Path) -> None:
    broker = _start(tmp_path)
    broker.add_vhost("app", "Application", ("prod", "eu"), "classic")
    broker.access.put_user(User.with_password("alice", "secret", ("management",)))
    broker.access.set_permissions("alice", "app", "^a", "^b", "^c")
    broker.access.set_topic_permissions("alice", "app", "amq.topic", "^{username}", "")
    broker.runtime.set_policy({"vhost": "app", "name": "p", "pattern": ".*",
                               "apply-to": "queues", "definition": {"max-length": 1},
                               "priority": 1})
    broker.delete_user("guest")
    broker.store.close()

    again = _start(tmp_path)
    assert set(again.vhosts) == {"/", "app"}
    info = again.vhost_info["app"]
    assert (info.description, info.tags, info.default_queue_type) == (
        "Application", ("prod", "eu"), "classic")
    assert set(again.access.users) == {"alice"}  # the deleted default user stays deleted
    assert again.authenticate("alice", "secret", "10.1.1.1") is None
    assert again.access.permissions[("alice", "app")].read == "^c"
    assert again.access.topic_permissions[("alice", "app")]["amq.topic"].write == "^{username}"
    assert again.runtime.policies[("app", "p")]["priority"] == 1
    again.store.close()


def test_a_configured_vhost_missing_from_the_store_is_created(tmp_path: Path) -> None:
    _start(tmp_path).store.close()
    broker = _start(tmp_path, vhosts=("extra",))
    assert "extra" in broker.vhosts and ("guest", "extra") in broker.access.permissions
    broker.store.close()
    assert "vhost\x00extra" in _stored_keys(tmp_path)
    served = _start(tmp_path)  # no longer configured: still there, like RabbitMQ's vhosts
    assert "extra" in served.vhosts
    served.store.close()


def test_exchanges_and_queues_are_recovered_into_stored_vhosts(tmp_path: Path) -> None:
    broker = _start(tmp_path)
    vhost = broker.add_vhost("runtime")
    broker.access.set_permissions("guest", "runtime", FULL, FULL, FULL)
    ex = vhost.declare_exchange("x", "direct", False, True, False, False, {})
    q, _ = vhost.declare_queue("q", False, True, False, False, {}, None)
    vhost.bind(ex, q, "k", {})
    broker.store.close()
    again = _start(tmp_path)
    vhost = again.vhosts["runtime"]
    assert "x" in vhost.exchanges and "q" in vhost.queues
    assert [k for _, k, _ in vhost.exchanges["x"].table.bindings()] == ["k"]
    again.store.close()


def _fill(broker: Broker, vhost: str) -> Client:
    c = Client(broker, vhost)
    c.open_channel(1)
    for method in (
            commands.Exchange.Declare(exchange="vx", exchange_type="fanout", durable=True),
            commands.Queue.Declare(queue="vq", durable=True),
            commands.Queue.Bind(queue="vq", exchange="vx", routing_key=""),
            commands.Exchange.Bind(destination="vx", source="amq.direct", routing_key="r")):
        c.send(method, 1)
        anyio.run(broker.store.commit)  # type: ignore[attr-defined]  # the reply waits for it
    for i in range(3):
        c.publish(1, "vx", "", b"m%d" % i, delivery_mode=2)
    anyio.run(broker.store.commit)  # type: ignore[attr-defined]
    c.frames()
    return c


def test_delete_vhost_closes_its_connections_and_removes_everything(tmp_path: Path) -> None:
    broker = _start(tmp_path, vhosts=("doomed",))
    broker.access.put_user(User.with_password("u", "p"))
    broker.access.set_permissions("u", "doomed", FULL, FULL, FULL)
    broker.runtime.set_policy({"vhost": "doomed", "name": "p", "pattern": ".*",
                               "apply-to": "all", "definition": {}, "priority": 0})
    on_doomed, on_root = _fill(broker, "doomed"), Client(broker, "/")
    assert len(broker.vhosts["doomed"].queues["vq"].ready) == 3
    consumer = Client(broker, "doomed")
    consumer.open_channel(1)
    consumer.send(commands.Basic.Consume(queue="vq"), 1)
    consumer.send(commands.Queue.Declare(queue="", exclusive=True), 1)
    assert len(of_type(consumer.frames(), commands.Basic.Deliver)) == 3

    broker.delete_vhost("doomed")
    for client in (on_doomed, consumer):
        (_, close), = of_type(client.frames(), commands.Connection.Close)
        assert (close.reply_code, close.reply_text) == (
            320, "CONNECTION_FORCED - vhost 'doomed' is deleted")
    assert not of_type(on_root.frames(), commands.Connection.Close)
    assert "doomed" not in broker.vhosts and "doomed" not in broker.vhost_info
    assert ("u", "doomed") not in broker.access.permissions
    assert not broker.runtime.policies
    anyio.run(broker.store.commit)  # type: ignore[attr-defined]
    broker.store.close()

    assert not [k for k in _stored_keys(tmp_path) if "doomed" in k]
    again = _start(tmp_path, vhosts=("doomed",))  # created anew, empty
    assert not again.orphans
    assert "vq" not in again.vhosts["doomed"].queues and "vx" not in again.vhosts[
        "doomed"].exchanges
    again.store.close()


def test_delete_vhost_that_does_not_exist() -> None:
    with pytest.raises(NotFoundError, match="no vhost 'nope'"):
        make_broker().delete_vhost("nope")


def test_delete_user_closes_its_connections() -> None:
    broker = make_broker(vhosts=("other",))
    c = Client(broker, "other")
    broker.delete_user("guest")
    (_, close), = of_type(c.frames(), commands.Connection.Close)
    assert (close.reply_code, close.reply_text) == (
        320, "CONNECTION_FORCED - user 'guest' is deleted")
    assert not broker.access.permissions
    with pytest.raises(NotFoundError):
        broker.delete_user("guest")


def test_add_vhost_again_updates_its_description() -> None:
    broker = make_broker()
    first = broker.add_vhost("v", "one", ("a",), "classic")
    assert broker.add_vhost("v", "two") is first
    info = broker.vhost_info["v"]
    assert (info.description, info.tags, info.default_queue_type) == ("two", (), "classic")


def test_loopback_users_and_external_login() -> None:
    broker = make_broker(loopback_users=("guest",))
    assert broker.authenticate("guest", "guest", "127.0.0.1") is None
    assert broker.authenticate("guest", "guest", "::1") is None
    assert broker.authenticate("guest", "guest", "10.0.0.2") == (
        "user 'guest' can only connect via localhost")
    assert broker.authenticate_external("guest", "127.0.0.1") is None
    assert broker.authenticate_external("guest", "10.0.0.2") == (
        "user 'guest' can only connect via localhost")
    assert broker.authenticate_external("CN=nobody", "127.0.0.1") == (
        "user 'CN=nobody' - invalid credentials")
    broker.access.put_user(User("CN=client,O=test"))  # no password: EXTERNAL only
    assert broker.authenticate_external("CN=client,O=test", "10.0.0.2") is None
    assert broker.authenticate("CN=client,O=test", "", "127.0.0.1") is not None


def test_definitions_loaded_at_first_start_replace_the_default_user(tmp_path: Path) -> None:
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps({
        "users": [{"name": "ops", "password": "pw", "tags": ["administrator"]}],
        "vhosts": [{"name": "prod"}],
        "permissions": [{"user": "ops", "vhost": "prod", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "queues": [{"name": "jobs", "vhost": "prod", "durable": True, "auto_delete": False,
                    "arguments": {"x-max-length": 10}}]}))
    data = tmp_path / "data"
    broker = _start(data, load_definitions=str(defs))
    assert set(broker.access.users) == {"ops"}
    assert broker.vhosts["prod"].queues["jobs"].args.max_length == 10
    broker.store.close()
    again = _start(data)  # without the file: everything it made is stored
    assert set(again.access.users) == {"ops"} and "jobs" in again.vhosts["prod"].queues
    again.store.close()


def test_bad_definitions_at_start_up_stop_it(tmp_path: Path) -> None:
    defs = tmp_path / "defs.json"
    defs.write_text('{"queues": [{"name": "q", "vhost": "nope", "durable": true}]}')
    with pytest.raises(DefinitionsError, match="queue 'q' in vhost 'nope' \\(queues\\[0\\]\\)"):
        _start(tmp_path / "data", load_definitions=str(defs))
