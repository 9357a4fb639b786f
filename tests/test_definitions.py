"""RabbitMQ's definitions JSON: files exported by RabbitMQ 3.10.8 (the management API's
GET /api/definitions and rabbitmqctl export_definitions) import as they are, their users
log in with their passwords, and export -> import -> export keeps everything; bad files
and bad entries are one clear error naming the entry; export-definitions reads a
stopped broker's data directory."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from amqp_broker.broker import Broker
from amqp_broker.definitions import (
    DefinitionsError,
    export_main,
    load_file,
    parse,
    plain,
    read_data_dir,
)
from amqp_broker.storage.disk import DiskStore

from inproc import make_broker

FIXTURES = Path(__file__).parent / "fixtures"
MGMT = FIXTURES / "rabbitmq-definitions.json"
CTL = FIXTURES / "rabbitmq-definitions-ctl.json"
PASSWORDS = {"guest": "guest", "alice": "alice-secret", "bob": "b0b pässword",
             "limited": "limited", "tuser": "tuser-pw"}


def _doc(path: Path = MGMT) -> dict[str, Any]:
    return json.loads(path.read_text("utf-8"))


def _imported(path: Path = MGMT) -> Broker:
    broker = make_broker()
    broker.import_definitions(_doc(path), str(path))
    return broker


@pytest.mark.parametrize("path", [MGMT, CTL], ids=["management-api", "rabbitmqctl"])
def test_rabbitmq_exports_import_as_they_are(path: Path) -> None:
    broker = _imported(path)
    assert set(broker.vhosts) == {"/", "app", "staging"}
    if path is CTL:  # RabbitMQ 3.10's management API exports vhost names only
        app = broker.vhost_info["app"]
        assert (app.description, app.tags, app.default_queue_type) == (
            "Application vhost", ("prod", "eu"), "classic")
    root = broker.vhosts["/"]
    assert root.exchanges["events"].arguments == {"alternate-exchange": "unrouted"}
    assert root.exchanges["events"].type_name == "headers"
    assert root.exchanges["auto-x"].auto_delete
    assert not root.exchanges["transient-x"].durable
    work = root.queues["work"]
    assert (work.args.max_priority, work.args.overflow, work.args.dead_letter_exchange) == (
        5, "reject-publish", "unrouted")
    assert not root.queues["transient-q"].durable
    assert not [q for q in root.queues if q.startswith("amq.")]  # skipped, as RabbitMQ
    assert {(k, dest.name) for dest, k, _ in root.exchanges["orders"].table.bindings()} == {
        ("orders.eu.#", "orders.eu"), ("orders.*.urgent", "orders.eu"), ("orders.#", "events")}
    assert [k for _, k, _ in broker.vhosts["app"].exchanges["amq.topic"].table.bindings()] == [
        "bob.#"]
    assert broker.access.users["bob"].tags == ("monitoring", "management", "custom-tag")
    assert broker.access.users["bob"].limits == {"max-connections": 10}
    assert broker.access.permissions[("limited", "/")].write == "ex-w.*"
    assert broker.access.topic_permissions[("bob", "app")]["amq.topic"].read == (
        "^(public|{username})\\..*")
    assert broker.runtime.policies[("app", "ttl-policy")]["definition"] == {
        "max-length": 1000, "message-ttl": 60000}
    assert broker.runtime.parameters[("staging", "vhost-limits", "limits")]["value"] == {
        "max-connections": 64, "max-queues": 256}
    assert broker.runtime.global_parameters["cluster_name"]["value"] == "reference-cluster"
    # rabbitmqctl writes this definition as [[key, value]] pairs; kept as an object
    assert broker.runtime.parameters[("app", "operator_policy", "op-limit")]["value"][
        "definition"] == {"max-length": 50000}


@pytest.mark.parametrize("path", [MGMT, CTL], ids=["management-api", "rabbitmqctl"])
def test_imported_users_log_in_with_their_passwords(path: Path) -> None:
    broker = _imported(path)
    for user, password in PASSWORDS.items():
        assert broker.authenticate(user, password, "127.0.0.1") is None, user
        assert broker.authenticate(user, password + "!", "127.0.0.1") is not None
    assert broker.authenticate("nopw", "", "127.0.0.1") is not None  # blank: refused
    assert broker.authenticate("certuser", "", "127.0.0.1") is not None
    assert broker.authenticate_external("certuser", "127.0.0.1") is None


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of an export this broker keeps, order-independent."""
    def rows(section: str, drop: tuple[str, ...] = ()) -> list[str]:
        return sorted(json.dumps({k: v for k, v in e.items() if k not in drop},
                                 sort_keys=True) for e in doc.get(section, []))
    return {
        "users": rows("users"),
        "vhosts": sorted(v["name"] for v in doc["vhosts"]),
        "permissions": rows("permissions"),
        "topic_permissions": rows("topic_permissions"),
        "policies": rows("policies"),
        "parameters": rows("parameters"),
        "global_parameters": rows("global_parameters"),
        "queues": rows("queues", ("type",)),
        "exchanges": rows("exchanges"),
        "bindings": rows("bindings"),
    }


def test_export_import_export_round_trip() -> None:
    first = _imported().export_definitions()
    broker = make_broker()
    broker.import_definitions(json.loads(json.dumps(first)))
    second = broker.export_definitions()
    assert _comparable(second) == _comparable(first)
    assert second["product_name"] == "amqp-broker"
    assert {"rabbit_version", "rabbitmq_version", "product_version"} <= set(second)


def test_export_keeps_what_rabbitmq_exported() -> None:
    original, exported = _doc(), _imported().export_definitions()
    ctl = _imported(CTL).export_definitions()
    ours, theirs = _comparable(exported), _comparable(original)
    for section in ("users", "permissions", "topic_permissions", "policies", "parameters",
                    "global_parameters", "exchanges", "bindings"):
        assert ours[section] == theirs[section], section
    amq = [q for q in original["queues"] if q["name"].startswith("amq.")]
    assert ours["queues"] == _comparable({**original, "queues": [
        q for q in original["queues"] if q not in amq]})["queues"]
    vhosts = {v["name"]: v for v in ctl["vhosts"]}
    assert vhosts["app"]["metadata"] == {"description": "Application vhost",
                                         "tags": ["prod", "eu"], "default_queue_type": "classic"}


def test_export_leaves_out_exclusive_queues_and_default_and_amq_exchanges() -> None:
    broker = make_broker()
    vhost = broker.vhosts["/"]
    owner = object()
    vhost.declare_queue("mine", False, False, True, False, {}, owner)
    q, _ = vhost.declare_queue("shared", False, True, False, False, {"x-max-length": 3}, None)
    vhost.bind(vhost.exchanges["amq.fanout"], q, "", {})
    vhost.bind(vhost.exchanges["amq.fanout"], vhost.queues["mine"], "", {})
    doc = broker.export_definitions()
    assert [q["name"] for q in doc["queues"]] == ["shared"]
    assert doc["queues"][0]["arguments"] == {"x-max-length": 3}
    assert doc["exchanges"] == []
    assert [(b["source"], b["destination"]) for b in doc["bindings"]] == [("amq.fanout",
                                                                           "shared")]
    assert [u["name"] for u in doc["users"]] == ["guest"]


def test_existing_exchanges_and_queues_are_left_as_they_are() -> None:
    broker = make_broker()
    vhost = broker.vhosts["/"]
    vhost.declare_queue("work", False, True, False, False, {}, None)
    counts = broker.import_definitions({"queues": [
        {"name": "work", "vhost": "/", "durable": True, "auto_delete": False,
         "arguments": {"x-max-length": 1}}]})
    assert counts["queues"] == 0 and vhost.queues["work"].arguments == {}


def test_plain_json_of_field_table_values() -> None:
    import decimal

    from amqp_broker.protocol.fieldtable import Timestamp
    assert plain({"b": b"bytes", "d": decimal.Decimal("1.5"), "t": Timestamp(7),
                  "l": [1, True, None]}) == {"b": "bytes", "d": 1.5, "t": 7,
                                             "l": [1, True, None]}


@pytest.mark.parametrize("text,message", [
    ("{", "is not valid JSON"),
    ("[1]", "must hold a JSON object, not list"),
])
def test_bad_json(text: str, message: str) -> None:
    with pytest.raises(DefinitionsError, match=message):
        parse(text, "defs.json")


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(users={"name": "x"}), "'users' must be a list"),
    (lambda d: d["users"].append("bob"), r"user users\[7\]: must be an object"),
    (lambda d: d["users"][1].pop("tags"), r"user '\w+' \(users\[1\]\): user '\w+' has no tags"),
    (lambda d: d["permissions"][0].update(write="("),
     r"permission of user '\w+' in vhost '/' \(permissions\[0\]\): .*invalid regular "
     r"expression '\('"),
    (lambda d: d["queues"][2].update(durable="maybe"),
     r"queue 'orders.eu' in vhost '/' \(queues\[2\]\): 'durable' must be true or false"),
    (lambda d: d["queues"][3].update(arguments={"x-max-length": "ten"}),
     r"queue 'work' in vhost '/' \(queues\[3\]\): invalid arg 'x-max-length'"),
    (lambda d: d["exchanges"][0].update(type="nonsense"),
     r"exchange 'auto-x' in vhost '/' \(exchanges\[0\]\): unknown exchange type 'nonsense'"),
    (lambda d: d["bindings"][0].update(destination="ghost"),
     r"binding of queue 'ghost' to exchange 'auto-x' in vhost '/' \(bindings\[0\]\): no queue "
     r"'ghost' in vhost '/'"),
    (lambda d: d["bindings"][0].update(destination_type="topic"),
     r"'destination_type' must be queue or exchange"),
    (lambda d: d["policies"][0].update(priority="high"), r"'priority' must be an integer"),
    (lambda d: d["permissions"][0].update(vhost="nowhere"), r"no vhost 'nowhere'"),
    (lambda d: d["vhosts"][0].update(metadata={"default_queue_type": "fast"}),
     r"unknown default_queue_type 'fast'"),
])
def test_bad_entries_are_named(change: Any, message: str) -> None:
    doc = copy.deepcopy(_doc())
    change(doc)
    with pytest.raises(DefinitionsError, match=message) as info:
        make_broker().import_definitions(doc, "defs.json")
    assert str(info.value).startswith("defs.json: ")


def test_entries_are_checked_before_anything_is_applied() -> None:
    doc = _doc()
    doc["bindings"][0]["routing_key"] = 5
    broker = make_broker()
    with pytest.raises(DefinitionsError, match="'routing_key' must be a string"):
        broker.import_definitions(doc)
    assert set(broker.access.users) == {"guest"} and set(broker.vhosts) == {"/"}


def test_definitions_directory_is_read_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text('{"vhosts": [{"name": "b"}]}')
    (tmp_path / "a.json").write_text('{"vhosts": [{"name": "a"}]}')
    (tmp_path / "notes.txt").write_text("not definitions")
    assert [Path(src).name for src, _ in load_file(str(tmp_path))] == ["a.json", "b.json"]
    with pytest.raises(DefinitionsError, match="cannot read definitions file"):
        load_file(str(tmp_path / "missing.json"))


def _stopped_broker_with_definitions(data: Path) -> None:
    broker = make_broker(DiskStore(data))
    broker.recover()
    broker.import_definitions(_doc())
    broker.store.close()


def test_export_definitions_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _stopped_broker_with_definitions(data)
    out = tmp_path / "out.json"
    assert export_main([str(out), "--data-dir", str(data)]) == 0
    written = json.loads(out.read_text("utf-8"))
    assert _comparable(written)["permissions"] == _comparable(_doc())["permissions"]
    assert {q["name"] for q in written["queues"]} >= {"work", "orders.eu", "bob-inbox"}
    assert "transient-q" not in {q["name"] for q in written["queues"]}  # not durable
    capsys.readouterr()
    assert export_main(["-", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == written  # nothing else on stdout


def test_export_definitions_of_a_running_broker_is_one_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _stopped_broker_with_definitions(data)
    running = DiskStore(data)
    running.open()
    try:
        assert export_main([str(tmp_path / "out.json"), "--data-dir", str(data)]) == 1
    finally:
        running.close()
    err = capsys.readouterr().err
    assert "in use" in err and "stop it first" in err and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_export_definitions_without_a_data_directory(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert export_main(["-", "--data-dir", str(tmp_path / "none")]) == 1
    assert "no data directory at" in capsys.readouterr().err


def test_reading_a_data_directory_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    data.mkdir()
    doc = read_data_dir(str(data))
    assert [u["name"] for u in doc["users"]] == ["guest"]  # what a first start would make
    again = DiskStore(data)
    try:
        assert again.open().definitions == {}
    finally:
        again.close()
