"""The management API's object endpoints (connections, channels, consumers, exchanges,
queues, bindings) and rates.py, in process: the app (create_app) over a broker from
inproc.make_broker, with in-process clients making connections, queues and messages.
Expected fields, codes and bodies are those the reference RabbitMQ 3.10 answers for
the same state. One end-to-end test drives RabbitMQ's own rabbitmqadmin against a
broker subprocess.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from mgmt_client import ApiClient
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.management import create_app
from amqp_broker.management import rates as rates_module
from amqp_broker.management.erlhash import Atom, phash2
from amqp_broker.management.rates import QUEUE_FIELDS, Rates
from amqp_broker.management.res_bindings import args_hash, properties_key
from amqp_broker.tls import TLSSession
from amqp_broker.users import User

from helpers import BrokerProcess, free_port
from inproc import Client, make_broker, of_type

CONN = "127.0.0.1:40000 -> 127.0.0.1:5672"


@pytest.fixture
def broker() -> Broker:
    return make_broker()


@pytest.fixture
def api(broker: Broker) -> ApiClient:
    return ApiClient(create_app(broker))


def add_user(broker: Broker, name: str, tags: tuple[str, ...], vhosts: tuple[str, ...] = ()
             ) -> None:
    broker.access.put_user(User.with_password(name, "pw", tags))
    for vhost in vhosts:
        broker.access.set_permissions(name, vhost, ".*", ".*", ".*")


def client(broker: Broker, port: int = 40000, channel: bool = True, **kwargs: Any) -> Client:
    c = Client(broker, **kwargs)
    c.conn.peer = ("127.0.0.1", port)
    if channel:
        c.open_channel(1)
    return c


def declare(c: Client, queue: str, **kwargs: Any) -> None:
    c.send(commands.Queue.Declare(queue=queue, **kwargs), 1)
    c.frames()


def q(name: str, vhost: str = "/") -> str:
    return f"/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"


# --- connections and channels ---------------------------------------------------------
def test_connections_list_and_one(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    c.conn.client_properties = {"product": b"test", "connection_name": "my app"}
    listed = api.get("/api/connections").json()
    assert [x["name"] for x in listed] == [CONN]
    conn = listed[0]
    assert conn["user"] == "guest" and conn["vhost"] == "/" and conn["channels"] == 1
    assert (conn["peer_host"], conn["peer_port"], conn["host"], conn["port"]) == (
        "127.0.0.1", 40000, "127.0.0.1", 5672)
    assert conn["protocol"] == "AMQP 0-9-1" and conn["state"] == "running"
    assert conn["auth_mechanism"] == "PLAIN" and conn["type"] == "network"
    assert conn["client_properties"] == {"product": "test", "connection_name": "my app"}
    assert conn["user_provided_name"] == "my app"
    assert conn["ssl"] is False and conn["ssl_protocol"] is None
    assert conn["frame_max"] == 131072 and conn["timeout"] == 0
    assert conn["recv_oct"] > 0 and conn["send_oct"] > 0
    assert abs(conn["connected_at"] / 1000 - time.time()) < 3600
    one = api.get(f"/api/connections/{quote(CONN, safe='')}")
    assert one.status_code == 200
    assert one.json()["name"] == CONN and one.json()["ssl_protocol"] == ""  # as RabbitMQ
    assert api.get("/api/vhosts/%2F/connections").json()[0]["name"] == CONN
    missing = api.get("/api/connections/nope")
    assert (missing.status_code, missing.json()) == (
        404, {"error": "Object Not Found", "reason": "Not Found"})
    assert api.get("/api/vhosts/nov/connections").status_code == 404
    paged = api.get("/api/connections?page=1&page_size=5").json()
    assert paged["total_count"] == 1 and paged["items"][0]["name"] == CONN


def test_tls_connection_fields(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    c.conn.tls_session = TLSSession(protocol="tlsv1.3", cipher="TLS_AES_256_GCM_SHA384",
                                    peer_cert_subject="CN=client,O=test",
                                    peer_cert_issuer="CN=ca", login="client", refusal=None)
    conn = api.get("/api/connections").json()[0]
    assert (conn["ssl"], conn["ssl_protocol"], conn["ssl_cipher"]) == (
        True, "tlsv1.3", "TLS_AES_256_GCM_SHA384")
    assert (conn["peer_cert_subject"], conn["peer_cert_issuer"]) == ("CN=client,O=test",
                                                                     "CN=ca")


def test_delete_connection_closes_it_with_320_and_the_reason(broker: Broker,
                                                              api: ApiClient) -> None:
    c = client(broker)
    reply = api.delete(f"/api/connections/{quote(CONN, safe='')}",
                       headers={"X-Reason": "maintenance window"})
    assert reply.status_code == 204
    closes = of_type(c.frames(), commands.Connection.Close)
    assert closes[0][1].reply_code == 320
    assert closes[0][1].reply_text == "CONNECTION_FORCED - maintenance window"
    other = client(broker, 40001)
    api.delete(f"/api/connections/{quote('127.0.0.1:40001 -> 127.0.0.1:5672', safe='')}")
    closes = of_type(other.frames(), commands.Connection.Close)
    assert closes[0][1].reply_text == "CONNECTION_FORCED - Closed via management plugin"


def test_close_reason_in_utf8_reaches_the_client_as_written(broker: Broker,
                                                           api: ApiClient) -> None:
    c = client(broker)
    reason = "maintenance — ok"
    reply = api.delete(f"/api/connections/{quote(CONN, safe='')}",
                       headers={"X-Reason": reason.encode()})
    assert reply.status_code == 204
    closes = of_type(c.frames(), commands.Connection.Close)
    assert closes[0][1].reply_text == f"CONNECTION_FORCED - {reason}"


def test_connection_visibility_by_tag(broker: Broker, api: ApiClient) -> None:
    add_user(broker, "mon", ("monitoring",), ("/",))
    add_user(broker, "mgr", ("management",), ("/",))
    client(broker)  # guest's
    mine = client(broker, 40001, user="mgr", password="pw")
    mon = api.as_user("mon", "pw")
    mgr = api.as_user("mgr", "pw")
    assert len(mon.get("/api/connections").json()) == 2
    assert [c["user"] for c in mgr.get("/api/connections").json()] == ["mgr"]
    assert [c["user"] for c in mgr.get("/api/channels").json()] == ["mgr"]
    guest_conn = f"/api/connections/{quote(CONN, safe='')}"
    assert mon.get(guest_conn).status_code == 200
    refused = mgr.get(guest_conn)
    assert (refused.status_code, refused.json()["reason"]) == (
        401, "User not authorised to access object")
    # only an administrator (or its own user) may close a connection
    assert mon.delete(guest_conn).status_code == 401
    own = f"/api/connections/{quote('127.0.0.1:40001 -> 127.0.0.1:5672', safe='')}"
    assert mgr.delete(own).status_code == 204
    assert of_type(mine.frames(), commands.Connection.Close)
    assert api.as_user("mgr", "wrong").get("/api/connections").status_code == 401


def test_channels_and_consumers(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "work")
    c.send(commands.Basic.Qos(prefetch_count=5), 1)
    c.send(commands.Basic.Consume(queue="work", consumer_tag="ct-1"), 1)
    c.send(commands.Confirm.Select(), 1)
    c.publish(1, "", "work", b"hello")
    c.frames()
    channels = api.get("/api/channels").json()
    assert len(channels) == 1
    ch = channels[0]
    assert ch["name"] == CONN + " (1)" and ch["number"] == 1 and ch["user"] == "guest"
    assert ch["connection_details"] == {"name": CONN, "peer_host": "127.0.0.1",
                                        "peer_port": 40000}
    assert ch["consumer_count"] == 1 and ch["prefetch_count"] == 5 and ch["confirm"] is True
    assert ch["messages_unacknowledged"] == 1 and ch["state"] == "running"
    stats = ch["message_stats"]
    assert stats["publish"] == 1 and stats["confirm"] == 1 and stats["deliver"] == 1
    assert stats["deliver_get"] == 1 and stats["publish_details"] == {"rate": 0.0}
    one = api.get(f"/api/channels/{quote(CONN + ' (1)', safe='')}").json()
    assert [x["consumer_tag"] for x in one["consumer_details"]] == ["ct-1"]
    assert api.get("/api/channels/nope").status_code == 404
    assert [x["name"] for x in api.get(
        f"/api/connections/{quote(CONN, safe='')}/channels").json()] == [CONN + " (1)"]
    assert len(api.get("/api/vhosts/%2F/channels").json()) == 1
    consumers = api.get("/api/consumers").json()
    assert consumers == [{
        "ack_required": True, "active": True, "activity_status": "up", "arguments": {},
        "channel_details": {"connection_name": CONN, "name": CONN + " (1)",
                            "node": broker.cluster_name, "number": 1,
                            "peer_host": "127.0.0.1", "peer_port": 40000, "user": "guest"},
        "consumer_tag": "ct-1", "exclusive": False, "prefetch_count": 5,
        "queue": {"name": "work", "vhost": "/"}}]
    assert api.get("/api/consumers/%2F").json() == consumers
    assert api.get("/api/consumers/nov").status_code == 404


def test_single_active_consumer_status(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "sac", arguments={"x-single-active-consumer": True})
    for tag in ("c1", "c2"):
        c.send(commands.Basic.Consume(queue="sac", consumer_tag=tag), 1)
    info = api.get(q("sac")).json()
    assert info["single_active_consumer_tag"] == "c1"
    assert [(x["active"], x["activity_status"]) for x in info["consumer_details"]] == [
        (True, "single_active"), (False, "waiting")]


# --- exchanges ---------------------------------------------------------------------------
def test_exchanges_list_get_put_delete(api: ApiClient) -> None:
    names = [x["name"] for x in api.get("/api/exchanges/%2F").json()]
    assert names == ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic"]
    default = api.get("/api/exchanges/%2F/amq.default").json()
    assert default["name"] == "" and default["user_who_performed_action"] == "rmq-internal"
    put = api.put("/api/exchanges/%2F/ex1", json={"type": "topic", "durable": True,
                                                   "arguments": {"alternate-exchange": "ae"}})
    assert put.status_code == 201
    assert api.put("/api/exchanges/%2F/ex1", json={"type": "topic", "durable": True}
                   ).status_code == 204
    assert api.get("/api/exchanges/%2F/ex1").json() == {
        "arguments": {"alternate-exchange": "ae"}, "auto_delete": False, "durable": True,
        "incoming": [], "internal": False, "name": "ex1", "outgoing": [], "type": "topic",
        "vhost": "/"}
    bad = api.put("/api/exchanges/%2F/ex1", json={"type": "direct", "durable": True})
    assert (bad.status_code, bad.json()) == (400, {
        "error": "bad_request", "reason": "inequivalent arg 'type' for exchange 'ex1' in "
        "vhost '/': received 'direct' but current is 'topic'"})
    assert api.put("/api/exchanges/%2F/ex2", json={"type": "bogus"}).json()["reason"] == \
        "unknown exchange type 'bogus'"
    assert api.put("/api/exchanges/%2F/ex2", json={}).status_code == 201  # direct
    assert api.get("/api/exchanges/%2F/ex2").json()["type"] == "direct"
    assert api.put("/api/exchanges/%2F/amq.foo", json={}).json() == {
        "error": "not_authorised", "reason": "Access refused."}
    assert api.put("/api/exchanges/nov/x", json={}).json() == {
        "error": "not_found", "reason": "vhost_not_found"}
    assert api.put("/api/exchanges/%2F/x", content=b"{oops").json() == {
        "error": "bad_request", "reason": "not_json"}
    assert api.delete("/api/exchanges/%2F/amq.direct").status_code == 401
    assert api.delete("/api/exchanges/%2F/nope").status_code == 404
    assert api.delete("/api/exchanges/%2F/ex2").status_code == 204
    assert api.get("/api/exchanges/%2F/ex2").status_code == 404
    assert api.get("/api/exchanges/nov").status_code == 404
    assert len(api.get("/api/exchanges").json()) == 7


def test_exchange_delete_if_unused(broker: Broker, api: ApiClient) -> None:
    api.put("/api/exchanges/%2F/ex", json={"type": "fanout"})
    api.put(q("bound"), json={})
    api.post("/api/bindings/%2F/e/ex/q/bound", json={})
    reply = api.delete("/api/exchanges/%2F/ex?if-unused=true")
    assert (reply.status_code, reply.json()["reason"]) == (
        400, "exchange 'ex' in vhost '/' in use")
    assert api.delete("/api/exchanges/%2F/ex").status_code == 204


def test_publish(broker: Broker, api: ApiClient) -> None:
    api.put(q("target"), json={})
    url = "/api/exchanges/%2F/amq.default/publish"
    props = {"delivery_mode": 2, "headers": {"a": 1, "b": [1, "y"]}, "priority": 3,
             "content_type": "text/plain", "timestamp": 12345, "type": "t"}
    reply = api.post(url, json={"routing_key": "target", "payload": "hi", "properties": props,
                                "payload_encoding": "string"})
    assert reply.json() == {"routed": True}
    assert api.post(url, json={"routing_key": "target", "payload": "AAEC/w==",
                               "payload_encoding": "base64", "properties": {}}).json() == {
        "routed": True}
    assert api.post(url, json={"routing_key": "none", "payload": "x",
                               "payload_encoding": "string", "properties": {}}).json() == {
        "routed": False}
    assert broker.vhosts["/"].queues["target"].message_count == 2
    got = api.post(q("target") + "/get", json={"count": 2, "ackmode": "ack_requeue_false",
                                               "encoding": "auto"}).json()
    assert got[0]["properties"] == props and got[0]["payload"] == "hi"
    assert (got[1]["payload"], got[1]["payload_encoding"]) == ("AAEC/w==", "base64")
    assert got[1]["properties"] == []  # RabbitMQ's empty property list

    def error(body: dict[str, Any], name: str = "amq.default") -> tuple[int, Any]:
        r = api.post(f"/api/exchanges/%2F/{name}/publish", json=body)
        return r.status_code, r.json()["reason"]

    base = {"routing_key": "target", "payload": "x", "payload_encoding": "string",
            "properties": {}}
    assert error({**base, "payload_encoding": "base64"}) == (400, ["not_base64", "x"])
    assert error({**base, "payload_encoding": "hex"}) == (400, ["unsupported_encoding", "hex"])
    assert error({**base, "payload": 5}) == (400, "payload_not_string")
    assert error({**base, "properties": {"delivery_mode": "2"}}) == (
        400, ["not_int", "delivery_mode"])
    without = dict(base)
    del without["properties"]
    assert error(without) == (400, "[{key_missing,properties}]")
    assert error(base, "nope") == (400, "404 NOT_FOUND - no exchange 'nope' in vhost '/'")
    assert error({**base, "properties": {"expiration": "abc"}}) == (
        400, "406 PRECONDITION_FAILED - invalid expiration 'abc': no_integer")


def test_publish_refused_by_a_full_queue(broker: Broker, api: ApiClient) -> None:
    api.put(q("full"), json={"arguments": {"x-max-length": 1, "x-overflow": "reject-publish"}})
    body = {"routing_key": "full", "payload": "x", "payload_encoding": "string",
            "properties": {}}
    url = "/api/exchanges/%2F/amq.default/publish"
    assert api.post(url, json=body).json() == {"routed": True}
    refused = api.post(url, json=body)
    assert (refused.status_code, refused.json()["reason"]) == (
        400, "rejected Unable to publish message. Check queue limits.")
    assert broker.counters.received == 2 and broker.vhosts["/"].queues["full"].message_count == 1


def test_publish_needs_write_permission(broker: Broker, api: ApiClient) -> None:
    add_user(broker, "reader", ("management",))
    broker.access.set_permissions("reader", "/", "", "", ".*")
    reply = api.as_user("reader", "pw").post(
        "/api/exchanges/%2F/amq.default/publish",
        json={"routing_key": "x", "payload": "x", "payload_encoding": "string",
              "properties": {}})
    assert reply.status_code == 400
    assert reply.json()["reason"].startswith("403 ACCESS_REFUSED - access to exchange")


# --- queues ------------------------------------------------------------------------------
def test_queue_fields(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "deep", durable=True, arguments={"x-max-length": 10})
    for body in (b"one", b"two", b"three"):
        c.publish(1, "", "deep", body)
    c.send(commands.Basic.Get(queue="deep"), 1)
    c.frames()
    info = api.get(q("deep")).json()
    expected = {
        "arguments": {"x-max-length": 10}, "auto_delete": False, "consumers": 0,
        "durable": True, "exclusive": False, "exclusive_consumer_tag": None,
        "messages": 3, "messages_ready": 2, "messages_unacknowledged": 1,
        "message_bytes": 11, "message_bytes_ready": 8, "message_bytes_unacknowledged": 3,
        "name": "deep", "node": broker.cluster_name, "policy": None, "state": "running",
        "type": "classic", "vhost": "/", "consumer_utilisation": 0,
        "effective_policy_definition": {}, "consumer_details": [], "incoming": []}
    assert {k: info[k] for k in expected} == expected
    assert info["messages_details"] == {"rate": 0.0}
    assert info["message_stats"]["publish"] == 3 and info["message_stats"]["deliver_get"] == 1
    assert info["idle_since"].endswith("+00:00")
    listed = api.get("/api/queues").json()
    assert [x["name"] for x in listed] == ["deep"] and "consumer_details" not in listed[0]
    assert api.get("/api/queues/%2F/nope").json() == {"error": "Object Not Found",
                                                      "reason": "Not Found"}
    assert api.get("/api/queues/nov").status_code == 404


def test_head_message_timestamp(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "ts")
    assert api.get(q("ts")).json()["head_message_timestamp"] is None
    c.publish(1, "", "ts", b"a")
    c.publish(1, "", "ts", b"b", timestamp=datetime.datetime.fromtimestamp(
        1700000000, datetime.UTC))
    assert api.get(q("ts")).json()["head_message_timestamp"] is None  # the head has none
    c.send(commands.Basic.Get(queue="ts", no_ack=True), 1)
    assert api.get(q("ts")).json()["head_message_timestamp"] == 1700000000


def test_queue_exclusive_owner_and_lock(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "mine", exclusive=True)
    info = api.get(q("mine")).json()
    assert info["exclusive"] is True
    assert info["owner_pid_details"] == {"name": CONN, "peer_host": "127.0.0.1",
                                         "peer_port": 40000}
    locked = api.delete(q("mine"))
    assert locked.status_code == 400
    assert locked.json()["reason"].startswith("cannot obtain exclusive access to locked queue")
    get = api.post(q("mine") + "/get", json={"count": 1, "ackmode": "ack_requeue_true",
                                             "encoding": "auto"})
    assert get.json()["reason"].startswith("405 RESOURCE_LOCKED - cannot obtain")


def test_queue_put_and_delete(broker: Broker, api: ApiClient) -> None:
    assert api.put(q("q1"), json={"durable": True, "arguments": {"x-max-length": 5}}
                   ).status_code == 201
    assert api.put(q("q1"), json={"durable": True, "arguments": {"x-max-length": 5}}
                   ).status_code == 204
    assert broker.vhosts["/"].queues["q1"].args.max_length == 5
    assert api.put(q("q1"), json={}).json()["reason"] == (
        "inequivalent arg 'durable' for queue 'q1' in vhost '/': received 'false' but "
        "current is 'true'")
    assert api.put(q("q2"), json={"arguments": {"x-max-length": "abc"}}).json()[
        "reason"] == ("invalid arg 'x-max-length' for queue 'q2' in vhost '/': "
                      "\"expected integer, got longstr\"")
    assert api.put(q("q2"), json={"durable": "yes"}).json() == {
        "error": "bad_request", "reason": ["not_boolean", "yes"]}
    assert api.put(q("q2"), json={"arguments": {"x-queue-type": "bogus"}}).status_code == 400
    assert api.put(q("amq.q"), json={}).status_code == 401
    assert api.put(q("x", "nov"), json={}).json() == {"error": "not_found",
                                                      "reason": "vhost_not_found"}
    assert api.put(q("quorum"), json={"durable": True,
                                      "arguments": {"x-queue-type": "quorum"}}
                   ).status_code == 201
    assert api.get(q("quorum")).json()["type"] == "quorum"
    api.post("/api/exchanges/%2F/amq.default/publish",
             json={"routing_key": "q1", "payload": "x", "payload_encoding": "string",
                   "properties": {}})
    assert api.delete(q("q1") + "?if-empty=true").json()["reason"] == \
        "queue 'q1' in vhost '/' not empty"
    c = client(broker)
    c.send(commands.Basic.Consume(queue="q1"), 1)
    assert api.delete(q("q1") + "?if-unused=true").json()["reason"] == \
        "queue 'q1' in vhost '/' in use"
    assert api.delete(q("q1")).status_code == 204
    assert "q1" not in broker.vhosts["/"].queues
    assert api.delete(q("q1")).status_code == 404


def test_purge_and_actions(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "p")
    for _ in range(3):
        c.publish(1, "", "p", b"x")
    assert api.delete(q("p") + "/contents").status_code == 204
    assert broker.vhosts["/"].queues["p"].message_count == 0
    assert api.delete(q("nope") + "/contents").status_code == 404
    assert api.post(q("p") + "/actions", json={"action": "sync"}).status_code == 204
    assert api.post(q("p") + "/actions", json={"action": "x"}).json()["reason"] == [
        "unknown", "x"]


def test_get_ackmodes(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    declare(c, "dlq")
    declare(c, "g", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
    c.publish(1, "", "g", b"hello", content_type="text/plain")
    c.publish(1, "", "g", b"\xff\xfe")
    url = q("g") + "/get"

    def get(**body: Any) -> Any:
        return api.post(url, json={"encoding": "auto", **body}).json()

    first = get(count=5, ackmode="ack_requeue_true", truncate=2)
    assert [(m["payload"], m["payload_bytes"], m["redelivered"], m["message_count"])
            for m in first] == [("he", 5, False, 1), ("//4=", 2, False, 0)]
    assert first[0]["payload_encoding"] == "string" and first[1]["payload_encoding"] == "base64"
    assert first[0]["properties"] == {"content_type": "text/plain"}
    assert (first[0]["exchange"], first[0]["routing_key"]) == ("", "g")
    again = get(count=1, ackmode="reject_requeue_true", encoding="base64")
    assert (again[0]["payload"], again[0]["redelivered"]) == ("aGVsbG8=", True)
    assert get(count=1, ackmode="reject_requeue_false")[0]["payload"] == "hello"
    assert broker.vhosts["/"].queues["dlq"].message_count == 1  # dead-lettered
    assert get(count=1, ackmode="ack_requeue_false")[0]["payload_bytes"] == 2
    assert get(count=1, ackmode="ack_requeue_false") == []
    assert broker.vhosts["/"].queues["dlq"].message_count == 1

    def error(body: dict[str, Any], path: str = url) -> tuple[int, Any]:
        r = api.post(path, json=body)
        return r.status_code, r.json()["reason"]

    assert error({"count": 1, "ackmode": "ack_requeue_true"}) == (
        400, "[{key_missing,encoding}]")
    assert error({"count": "x", "ackmode": "ack_requeue_true", "encoding": "auto"}) == (
        400, ["not_integer", "x"])
    assert error({"count": 1, "ackmode": "ack_requeue_true", "encoding": "hex"}) == (
        400, "Unsupported encoding. Please use auto or base64.")
    assert error({"count": 1, "ackmode": "keep", "encoding": "auto"})[0] == 400
    assert error({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
                 q("nope") + "/get") == (404, "NOT_FOUND - no queue 'nope' in vhost '/'")


def test_queue_lists_paginate_sort_and_columns(broker: Broker, api: ApiClient) -> None:
    c = client(broker)
    for name, depth in (("a1", 2), ("b2", 0), ("a3", 1)):
        declare(c, name)
        for _ in range(depth):
            c.publish(1, "", name, b"m")
    page = api.get("/api/queues?page=1&page_size=2&name=a&columns=name,messages").json()
    assert page == {"filtered_count": 2, "item_count": 2, "items": [
        {"messages": 2, "name": "a1"}, {"messages": 1, "name": "a3"}], "page": 1,
        "page_count": 1, "page_size": 2, "total_count": 3}
    ordered = api.get("/api/queues/%2F?sort=messages&sort_reverse=true&columns=name").json()
    assert ordered == [{"name": "a1"}, {"name": "a3"}, {"name": "b2"}]
    regex = api.get("/api/queues?page=1&name=^a.$&use_regex=true&columns=name").json()
    assert [x["name"] for x in regex["items"]] == ["a1", "a3"]
    assert api.get("/api/queues?page=0").json()["error"] == "invalid_pagination_parameters"
    assert api.get(q("a1") + "?columns=name,message_stats.publish").json() == {
        "name": "a1", "message_stats": {"publish": 2}}


def test_visibility_of_queues_and_exchanges_by_vhost(broker: Broker, api: ApiClient) -> None:
    broker.add_vhost("other")
    broker.access.set_permissions("guest", "other", ".*", ".*", ".*")
    add_user(broker, "mgr", ("management",), ("other",))
    add_user(broker, "mon", ("monitoring",))
    api.put(q("in-root"), json={})
    api.put(q("in-other", "other"), json={})
    mgr, mon = api.as_user("mgr", "pw"), api.as_user("mon", "pw")
    assert [x["name"] for x in mgr.get("/api/queues").json()] == ["in-other"]
    assert [x["name"] for x in mon.get("/api/queues").json()] == ["in-root", "in-other"]
    refused = mgr.get(q("in-root"))
    assert (refused.status_code, refused.json()["reason"]) == (
        401, "User not authorised to access virtual host")
    assert mgr.get("/api/exchanges/%2F").status_code == 401
    assert {x["vhost"] for x in mgr.get("/api/exchanges").json()} == {"other"}
    assert mon.get(q("in-root")).status_code == 200
    # monitoring reads everything but may not change what it has no permissions for
    assert mon.delete(q("in-root")).status_code == 401
    assert mgr.put(q("new", "other"), json={}).status_code == 201
    assert mgr.get("/api/bindings").json()[0]["vhost"] == "other"
    assert api.as_user("mgr", "pw").get("/api/bindings/%2F").status_code == 401


# --- bindings ----------------------------------------------------------------------------
def test_bindings_create_list_get_delete(broker: Broker, api: ApiClient) -> None:
    api.put("/api/exchanges/%2F/src", json={"type": "topic"})
    api.put("/api/exchanges/%2F/dst", json={"type": "fanout"})
    api.put(q("bq"), json={"durable": True})
    created = api.post("/api/bindings/%2F/e/src/q/bq",
                       json={"routing_key": "a.#", "arguments": {"k": "v"}})
    key = "a.%23~" + args_hash({"k": "v"})
    assert (created.status_code, created.headers["location"]) == (
        201, f"bq/{quote(key, safe='')}")
    plain = api.post("/api/bindings/%2F/e/src/q/bq", json={})
    assert plain.headers["location"] == "bq/~"
    assert api.post("/api/bindings/%2F/e/src/e/dst", json={"routing_key": "b~c"}
                    ).headers["location"] == "dst/b%257Ec"
    listed = api.get("/api/bindings/%2F/e/src/q/bq").json()
    assert listed == [
        {"source": "src", "vhost": "/", "destination": "bq", "destination_type": "queue",
         "routing_key": "", "arguments": {}, "properties_key": "~"},
        {"source": "src", "vhost": "/", "destination": "bq", "destination_type": "queue",
         "routing_key": "a.#", "arguments": {"k": "v"}, "properties_key": key}]
    everything = api.get("/api/bindings/%2F").json()
    assert [(b["source"], b["destination"], b["routing_key"]) for b in everything] == [
        ("", "bq", "bq"), ("src", "bq", ""), ("src", "bq", "a.#"), ("src", "dst", "b~c")]
    assert api.get("/api/bindings").json() == everything
    # binding lists are never paginated in RabbitMQ (reply_list, not reply_list_or_paginate)
    assert api.get("/api/bindings/%2F?page=1&page_size=1").json() == everything
    one = api.get(f"/api/bindings/%2F/e/src/q/bq/{quote(key, safe='')}")
    assert one.status_code == 200 and one.json()["arguments"] == {"k": "v"}
    assert api.get("/api/bindings/%2F/e/src/q/bq/a.%2523~zzzzzz").status_code == 404
    assert api.get("/api/bindings/%2F/e/src/q/bq/nokey").status_code == 404
    assert api.get("/api/bindings/%2F/e/src/x/bq").status_code == 404
    assert api.get("/api/exchanges/%2F/src/bindings/source").json()[-1]["destination"] == "dst"
    assert [b["source"] for b in api.get(
        "/api/exchanges/%2F/dst/bindings/destination").json()] == ["src"]
    assert [b["source"] for b in api.get(q("bq") + "/bindings").json()] == ["", "src", "src"]
    assert [b["destination"] for b in api.get(
        "/api/exchanges/%2F/amq.default/bindings/source").json()] == ["bq"]
    assert api.delete(f"/api/bindings/%2F/e/src/q/bq/{quote(key, safe='')}"
                      ).status_code == 204
    assert api.delete(f"/api/bindings/%2F/e/src/q/bq/{quote(key, safe='')}"
                      ).status_code == 404
    assert api.delete("/api/bindings/%2F/e/src/e/dst/b%257Ec").status_code == 204
    assert [b["routing_key"] for b in api.get("/api/bindings/%2F/e/src/q/bq").json()] == [""]
    # published through the remaining binding
    api.post("/api/exchanges/%2F/src/publish", json={
        "routing_key": "", "payload": "x", "payload_encoding": "string", "properties": {}})
    assert broker.vhosts["/"].queues["bq"].message_count == 1


def test_binding_errors(api: ApiClient) -> None:
    api.put("/api/exchanges/%2F/src", json={"type": "direct"})
    assert api.post("/api/bindings/%2F/e/src/q/nope", json={}).json() == {
        "error": "not_found", "reason": "no queue 'nope' in vhost '/'"}
    assert api.post("/api/bindings/%2F/e/nope/e/src", json={}).json()["reason"] == \
        "no exchange 'nope' in vhost '/'"
    assert api.post("/api/bindings/nov/e/src/q/x", json={}).json()["reason"] == \
        "vhost_not_found"
    api.put(q("bq"), json={})
    assert api.post("/api/bindings/%2F/e/amq.default/q/bq", json={}).status_code == 401
    assert api.post("/api/bindings/%2F/e/src/q/bq", content=b"[").json()["reason"] == \
        "not_json"
    assert api.get("/api/bindings/%2F/e/nope/q/bq").json() == []


def test_properties_key() -> None:
    assert properties_key("", {}) == "~"
    assert properties_key("a b/c~", {}) == "a+b%2Fc%7E"
    # the hashes the reference RabbitMQ 3.10 gave the same arguments (POSTed as JSON)
    assert properties_key("a.#", {"k": "v"}) == "a.%23~8IXMRA"
    assert properties_key("r.k", {"x": 1}) == "r.k~9nmLZQ"
    assert properties_key("", {"c": False, "a": {"b": [1, "y"]}, "f": 2.5, "n": -7,
                               "big": 2 ** 40, "s": "héllo", "x-match": "any"}) == "~l7_4UA"
    assert args_hash({"b": 1, "a": 2}) == args_hash({"a": 2, "b": 1})  # sorted by key


@pytest.mark.parametrize(("term", "expected"), [
    # erlang:phash2(Term, 1 bsl 32) as Erlang/OTP computes it
    ([], 3468870702), ([[]], 499070068), (Atom("longstr"), 56945346), (0, 3175731469),
    (-1, 1117813597), (134217728, 2562491755), (-134217729, 1418916782),
    (18446744073709551616, 2519041713), (-18446744073709551617, 1695687848),
    (1.5, 2023646235), (-0.25, 1092371492), (b"", 147926629),
    (b"hello world, twelve+", 1551684681), ((), 221703996), ([1, 2, 3, 4, 5], 3824152778),
    ([300, 1], 3636192855), ([(b"k", Atom("longstr"), b"v")], 4035300420),
    ([(b"n", Atom("void"), Atom("undefined")), (b"d", Atom("double"), 2.5)], 83921274),
])
def test_phash2(term: Any, expected: int) -> None:
    assert phash2(term) == expected


# --- rates ---------------------------------------------------------------------------------
def test_rates_from_samples(broker: Broker, api: ApiClient,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    sampler = Rates(broker, clock=lambda: now[0])
    monkeypatch.setitem(rates_module._registry, broker, sampler)
    c = client(broker)
    declare(c, "r")
    sampler.sample()
    for _ in range(10):
        c.publish(1, "", "r", b"m")
    now[0] += 5.0
    sampler.sample()
    info = api.get(q("r")).json()
    assert info["message_stats"]["publish_details"] == {"rate": 2.0}
    assert info["messages_details"] == {"rate": 2.0}
    channel = api.get("/api/channels").json()[0]["message_stats"]
    assert channel["publish"] == 10 and channel["publish_details"] == {"rate": 2.0}
    assert sampler.total_rates()["publish"] == 2.0
    details = sampler.total_details("publish", 60, 5)
    assert [s["sample"] for s in details["samples"]] == [10, 0]
    assert details["avg_rate"] == 2.0 and details["avg"] == 5.0
    c.send(commands.Queue.Purge(queue="r"), 1)
    now[0] += 5.0
    sampler.sample()
    assert sampler.object_rates(("queue", "/", "r"), QUEUE_FIELDS)["messages"] == -2.0
    assert rates_module.overview_message_stats(broker)["publish"] == 10


def test_api_publish_and_get_count_in_the_totals(broker: Broker, api: ApiClient) -> None:
    """As RabbitMQ's API (a channel per request), its publishes and gets are counted in
    the broker's message_stats."""
    api.put(q("t"), json={})
    for key in ("t", "nowhere"):
        api.post("/api/exchanges/%2F/amq.default/publish", json={
            "routing_key": key, "payload": "x", "payload_encoding": "string",
            "properties": {}})
    api.post(q("t") + "/get", json={"count": 1, "ackmode": "ack_requeue_true",
                                    "encoding": "auto"})
    api.post(q("t") + "/get", json={"count": 5, "ackmode": "ack_requeue_false",
                                    "encoding": "auto"})
    counts = rates_module.broker_counts(broker)
    assert {k: counts[k] for k in ("publish", "confirm", "drop_unroutable", "get",
                                   "get_no_ack", "get_empty", "redeliver", "deliver_get")} == {
        "publish": 2, "confirm": 2, "drop_unroutable": 1, "get": 1, "get_no_ack": 1,
        "get_empty": 1, "redeliver": 1, "deliver_get": 2}


def test_rates_forget_objects_that_are_gone(broker: Broker) -> None:
    sampler = Rates(broker)
    c = client(broker)
    declare(c, "gone")
    sampler.sample()
    assert ("queue", "/", "gone") in sampler.objects
    c.send(commands.Queue.Delete(queue="gone"), 1)
    sampler.sample()
    assert ("queue", "/", "gone") not in sampler.objects


# --- real management clients, end to end ------------------------------------------------------
RABBITMQADMIN = shutil.which("rabbitmqadmin")


@pytest.fixture(scope="module")
def live_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker subprocess with its management API on a free port (stopped by PID)."""
    tmp = tmp_path_factory.mktemp("mgmt_objects")
    proc = BrokerProcess(data_dir=tmp / "data", log_path=tmp / "broker.log",
                         management_port=free_port())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.time_limit(90)
@pytest.mark.skipif(RABBITMQADMIN is None,
                    reason="rabbitmqadmin is not installed (Debian package rabbitmq-server)")
def test_rabbitmqadmin_against_the_broker(live_broker: BrokerProcess) -> None:
    import pika

    proc = live_broker
    admin = [str(RABBITMQADMIN), "-H", "127.0.0.1", "-P", str(proc.management_port),
             "-u", "guest", "-p", "guest"]

    def run(*args: str) -> str:
        done = subprocess.run(admin + list(args), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (args, done.stdout, done.stderr, proc.log())
        return done.stdout

    def rows(*args: str) -> list[dict[str, Any]]:
        return list(json.loads(run("-f", "raw_json", *args)))

    assert run("declare", "queue", "name=adm.q", "durable=true") == "queue declared\n"
    run("declare", "exchange", "name=adm.x", "type=topic")
    run("declare", "binding", "source=adm.x", "destination=adm.q", "routing_key=k.#")
    assert "adm.q" in [x["name"] for x in rows("list", "queues")]
    assert "adm.x" in [x["name"] for x in rows("list", "exchanges")]
    assert ("adm.x", "adm.q", "k.#") in [(b["source"], b["destination"], b["routing_key"])
                                          for b in rows("list", "bindings")]
    assert run("publish", "exchange=adm.x", "routing_key=k.1",
               "payload=hello") == "Message published\n"
    got = rows("get", "queue=adm.q", "ackmode=ack_requeue_true")
    assert (got[0]["payload"], got[0]["redelivered"]) == ("hello", False)
    assert {x["name"]: x["messages"] for x in rows("list", "queues", "name", "messages")}[
        "adm.q"] == 1
    assert run("purge", "queue", "name=adm.q") == "queue purged\n"
    assert rows("get", "queue=adm.q") == []
    connection = pika.BlockingConnection(pika.URLParameters(proc.url))
    try:
        channel = connection.channel()
        channel.queue_declare("adm.q", durable=True, passive=True)
        listed = rows("list", "connections")
        assert [(c["user"], c["channels"]) for c in listed] == [("guest", 1)]
        assert rows("list", "channels")[0]["name"] == listed[0]["name"] + " (1)"
        assert run("close", "connection", f"name={listed[0]['name']}") == \
            "connection closed\n"
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            for _ in range(50):
                connection.process_data_events(0.1)
        assert closed.value.reply_code == 320
    finally:
        if connection.is_open:
            connection.close()
    run("delete", "binding", "source=adm.x", "destination=adm.q",
        "destination_type=queue", "properties_key=k.%23")
    assert "adm.x" not in [b["source"] for b in rows("list", "bindings")]
    assert run("delete", "exchange", "name=adm.x") == "exchange deleted\n"
    assert run("delete", "queue", "name=adm.q") == "queue deleted\n"
    assert "adm.q" not in [x["name"] for x in rows("list", "queues")]


@pytest.mark.time_limit(60)
def test_amqpstorm_management_client(live_broker: BrokerProcess) -> None:
    """AMQPStorm's management API client (amqpstorm.management) does what it does
    against RabbitMQ."""
    management = pytest.importorskip("amqpstorm.management")
    import pika

    api = management.ManagementApi(live_broker.management_url, "guest", "guest")
    api.queue.declare("storm.q", durable=True, arguments={"x-max-length": 100})
    api.exchange.declare("storm.x", "topic", durable=True)
    assert api.exchange.get("storm.x")["type"] == "topic"
    api.queue.bind("storm.q", "storm.x", "k.#", arguments={"a": 1})
    bindings = api.queue.bindings("storm.q")
    assert [(b["source"], b["routing_key"]) for b in bindings] == [("", "storm.q"),
                                                                  ("storm.x", "k.#")]
    assert api.basic.publish("hello", "k.1", "storm.x",
                             properties={"content_type": "text/plain"}) == {"routed": True}
    assert api.queue.get("storm.q")["messages"] == 1
    got = api.basic.get("storm.q", requeue=True, to_dict=True)
    assert (got[0]["payload"], got[0]["properties"]) == ("hello",
                                                         {"content_type": "text/plain"})
    api.queue.purge("storm.q")
    assert api.basic.get("storm.q", to_dict=True) == []
    connection = pika.BlockingConnection(pika.URLParameters(live_broker.url))
    try:
        connection.channel()
        name = api.connection.list()[0]["name"]
        assert api.connection.get(name)["channels"] == 1
        assert api.channel.list()[0]["name"] == name + " (1)"
        api.connection.close(name, reason="storm says bye")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            for _ in range(50):
                connection.process_data_events(0.1)
        assert closed.value.reply_text == "CONNECTION_FORCED - storm says bye"
    finally:
        if connection.is_open:
            connection.close()
    api.queue.unbind("storm.q", "storm.x", "k.#", properties_key=bindings[1]["properties_key"])
    assert len(api.queue.bindings("storm.q")) == 1
    api.exchange.delete("storm.x")
    api.queue.delete("storm.q")
    with pytest.raises(management.ApiError) as missing:
        api.queue.get("storm.q")
    assert missing.value.error_code == 404
