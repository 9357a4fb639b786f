"""The management API's core (amqp_broker/management: app, auth, errors, listing, serve and
the overview, nodes, whoami, vhosts, users, permissions, policies, definitions and health
resources).

Most tests run the Starlette app in process (tests/mgmt_client.ApiClient over httpx's ASGI
transport, against a broker from tests/inproc.make_broker); the last ones start a broker
subprocess with a management port: served in the broker's loop, stopped with it, a busy
port refused at start-up, and RabbitMQ's own rabbitmqadmin against it (skipped when it is
not installed).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pamqp import commands

from amqp_broker.broker import Broker
from amqp_broker.connection import ConnState
from amqp_broker.management import create_app
from amqp_broker.management.listing import select_columns, sort_items
from amqp_broker.users import User, hash_password
from tests.helpers import REPO_ROOT, BrokerProcess, free_port
from tests.inproc import Client, make_broker
from tests.mgmt_client import ApiClient

# the resources this module tests (other helpers' modules may be mid-change)
CORE = ("res_overview", "res_nodes", "res_whoami", "res_vhosts", "res_users",
        "res_permissions", "res_policies", "res_definitions", "res_health")
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


@pytest.fixture
def broker() -> Broker:
    return make_broker()


@pytest.fixture
def api(broker: Broker) -> ApiClient:
    return ApiClient(create_app(broker, modules=CORE))


def add_user(api: ApiClient, name: str, tags: str, vhost: str | None = None) -> ApiClient:
    """A user with password "pw" (and full permissions in vhost); a client logged in as it."""
    r = api.put(f"/api/users/{name}", json={"password": "pw", "tags": tags})
    assert r.status_code == 201
    if vhost is not None:
        assert api.put(f"/api/permissions/{quote(vhost, safe='')}/{name}",
                       json={"configure": ".*", "write": ".*", "read": ".*"}).status_code == 201
    return api.as_user(name, "pw")


# --- auth ---------------------------------------------------------------------------------

def test_no_credentials_is_401_with_the_login_challenge_and_no_body(api: ApiClient) -> None:
    r = api.get("/api/whoami", auth=None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'
    assert r.content == b""


@pytest.mark.parametrize("auth", [("guest", "wrong"), ("nobody", "x"), ("guest", "")])
def test_wrong_credentials_are_401_login_failed(api: ApiClient, auth: tuple[str, str]) -> None:
    r = api.get("/api/overview", auth=auth)
    assert r.status_code == 401
    assert r.json() == {"error": "not_authorized", "reason": "Login failed"}
    assert "www-authenticate" in r.headers


def test_a_malformed_authorization_header_is_401(api: ApiClient) -> None:
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        r = api.get("/api/whoami", auth=None, headers={"authorization": header})
        assert r.status_code == 401, header


def test_a_user_without_management_tags_is_401(api: ApiClient) -> None:
    plain = add_user(api, "plain", "", "/")
    r = plain.get("/api/whoami")
    assert r.status_code == 401
    assert r.json() == {"error": "not_authorised", "reason": "Not management user"}


def test_a_loopback_user_from_another_host_is_refused(broker: Broker) -> None:
    remote = ApiClient(create_app(broker, modules=CORE), peer="192.0.2.7")
    r = remote.get("/api/whoami")
    assert r.status_code == 401
    assert r.json()["reason"] == "User can only log in via localhost"


# what each tag may do: path -> expected status per tag (the user has permissions in "/")
MATRIX: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "/api/whoami", {"management": 200, "monitoring": 200, "policymaker": 200}),
    ("GET", "/api/overview", {"management": 200, "monitoring": 200, "policymaker": 200}),
    ("GET", "/api/nodes", {"management": 401, "monitoring": 200, "policymaker": 401}),
    ("GET", "/api/vhosts", {"management": 200, "monitoring": 200, "policymaker": 200}),
    ("GET", "/api/vhosts/%2F", {"management": 401, "monitoring": 401, "policymaker": 401}),
    ("PUT", "/api/vhosts/new", {"management": 401, "monitoring": 401, "policymaker": 401}),
    ("GET", "/api/users", {"management": 401, "monitoring": 401, "policymaker": 401}),
    ("GET", "/api/permissions", {"management": 401, "monitoring": 401, "policymaker": 401}),
    ("GET", "/api/policies", {"management": 200, "monitoring": 200, "policymaker": 200}),
    ("GET", "/api/parameters", {"management": 401, "monitoring": 401, "policymaker": 200}),
    ("GET", "/api/global-parameters",
     {"management": 401, "monitoring": 401, "policymaker": 200}),
    ("PUT", "/api/policies/%2F/p",
     {"management": 401, "monitoring": 401, "policymaker": 201}),
    ("GET", "/api/definitions", {"management": 401, "monitoring": 401, "policymaker": 401}),
    ("GET", "/api/aliveness-test/%2F",
     {"management": 200, "monitoring": 200, "policymaker": 200}),
    ("GET", "/api/health/checks/alarms",
     {"management": 200, "monitoring": 200, "policymaker": 200}),
]


@pytest.mark.parametrize("tag", ["management", "monitoring", "policymaker", "administrator"])
def test_tag_matrix(api: ApiClient, tag: str) -> None:
    user = add_user(api, f"u-{tag}", tag, "/")
    for method, path, expected in MATRIX:
        body = {"pattern": "^x", "definition": {"max-length": 1}} if method == "PUT" else None
        r = user.request(method, path, json=body)
        want = expected.get(tag, 201 if method == "PUT" else 200)
        assert r.status_code == want, (tag, method, path, r.text)
        if want == 401:
            assert r.json()["error"] == "not_authorised"


def test_a_vhost_without_permissions_is_401_for_management_users(api: ApiClient) -> None:
    api.put("/api/vhosts/other", json={})
    user = add_user(api, "m", "management", "/")
    r = user.get("/api/aliveness-test/other")
    assert r.status_code == 401
    assert r.json() == {"error": "not_authorised",
                        "reason": "User not authorised to access virtual host"}
    assert [v["name"] for v in user.get("/api/vhosts").json()] == ["/"]


# --- errors -------------------------------------------------------------------------------

def test_unknown_path_and_method(api: ApiClient) -> None:
    r = api.get("/api/no-such-thing")
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    r = api.post("/api/overview")
    assert r.status_code == 405 and r.content == b""
    assert "GET" in r.headers["allow"]


def test_bad_json_is_400_not_json(api: ApiClient) -> None:
    for body in (b"{nope", b"[1, 2]", b"\xff\xfe"):
        r = api.put("/api/vhosts/x", content=body)
        assert (r.status_code, r.json()) == (400, {"error": "bad_request", "reason": "not_json"})


def test_a_failing_handler_is_500_in_json_and_the_app_goes_on(
        api: ApiClient, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")
    monkeypatch.setattr(broker, "export_definitions", broken)
    r = api.get("/api/definitions")
    assert r.status_code == 500
    assert r.json()["error"] == "Internal Server Error"
    assert api.get("/api/whoami").status_code == 200


def test_options_and_405_list_the_methods_of_the_path(api: ApiClient) -> None:
    r = api.request("OPTIONS", "/api/vhosts/%2F", auth=None)
    assert (r.status_code, r.headers["allow"]) == (200, "HEAD, GET, PUT, DELETE, OPTIONS")
    r = api.request("PATCH", "/api/vhosts/%2F")
    assert (r.status_code, r.headers["allow"]) == (405, "HEAD, GET, PUT, DELETE, OPTIONS")


def test_a_body_over_the_limit_is_refused(api: ApiClient,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from amqp_broker.management import errors
    monkeypatch.setattr(errors, "MAX_BODY", 100)
    big = json.dumps({"description": "x" * 200})
    r = api.put("/api/vhosts/big", content=big)
    assert r.json() == {"error": "bad_request",
                        "reason": "Exceeded HTTP request body size limit"}
    assert api.put("/api/vhosts/small", json={}).status_code == 201


def test_api_replies_are_not_cached(api: ApiClient) -> None:
    assert api.get("/api/whoami").headers["cache-control"] == "no-cache"


# --- listing ------------------------------------------------------------------------------

def test_columns_sort_and_pagination(api: ApiClient) -> None:
    for name in ("b", "a", "c"):
        api.put(f"/api/vhosts/{name}", json={"description": f"d-{name}"})
    assert api.get("/api/vhosts?columns=name").json() == [
        {"name": "/"}, {"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert api.get("/api/vhosts?columns=name,metadata.description&sort=name"
                   "&sort_reverse=true").json()[0] == {"name": "c",
                                                      "metadata": {"description": "d-c"}}
    page = api.get("/api/vhosts?page=2&page_size=2&columns=name").json()
    assert page == {"total_count": 4, "item_count": 2, "filtered_count": 4, "page": 2,
                    "page_size": 2, "page_count": 2, "items": [{"name": "b"}, {"name": "c"}]}
    filtered = api.get("/api/vhosts?page=1&name=B&columns=name").json()
    assert filtered["items"] == [{"name": "b"}] and filtered["filtered_count"] == 1
    regex = api.get("/api/vhosts?page=1&name=^[ac]$&use_regex=true&columns=name").json()
    assert [v["name"] for v in regex["items"]] == ["a", "c"]


@pytest.mark.parametrize("query,reason", [
    ("page=0", "Invalid pagination parameters: page number 0, page size undefined"),
    ("page=1&page_size=501", "Invalid pagination parameters: page number 1, page size 501"),
    ("page=9&page_size=1", "Page out of range, page: 9 page size: 1, len: 1"),
    ("page=x", "Pagination parameters are invalid"),
])
def test_bad_pagination_is_400(api: ApiClient, query: str, reason: str) -> None:
    r = api.get(f"/api/vhosts?{query}")
    assert r.status_code == 400
    assert r.json()["reason"] == reason


def test_sort_orders_like_erlang_terms() -> None:
    items = [{"n": "b"}, {"n": 2}, {}, {"n": "a"}, {"n": 1}]
    # a missing field is 0, numbers sort before strings
    assert sort_items(items, (), "n", False) == [{}, {"n": 1}, {"n": 2}, {"n": "a"},
                                                {"n": "b"}]
    assert select_columns({"a": {"b": 1, "c": 2}, "d": 3}, [["a", "b"]]) == {"a": {"b": 1}}


# --- whoami, overview, nodes ---------------------------------------------------------------

def test_whoami(api: ApiClient) -> None:
    assert api.get("/api/whoami").json() == {"name": "guest", "tags": ["administrator"]}


def test_overview_fields(api: ApiClient, broker: Broker) -> None:
    client = Client(broker)
    client.open_channel(1)
    client.send(commands.Queue.Declare(queue="q1"), 1)
    overview = api.get("/api/overview").json()
    for key in ("management_version", "rabbitmq_version", "product_name", "product_version",
                "cluster_name", "node", "object_totals", "queue_totals", "message_stats",
                "listeners", "contexts", "exchange_types", "churn_rates", "rates_mode"):
        assert key in overview, key
    assert overview["rabbitmq_version"].startswith("3.")
    assert overview["product_name"] == "amqp-broker"
    assert overview["object_totals"]["queues"] == 1
    assert overview["object_totals"]["connections"] == 1
    assert overview["message_stats"]["publish_details"] == {"rate": 0.0}
    assert overview["queue_totals"]["messages"] == 0
    assert [t["name"] for t in overview["exchange_types"]] == [
        "direct", "fanout", "headers", "topic", "x-delayed-message", "x-message-deduplication"]
    mgmt = add_user(api, "m", "management")
    mine = mgmt.get("/api/overview").json()
    assert "node" not in mine and "listeners" not in mine
    assert mine["object_totals"]["queues"] == 0  # no permissions in "/"


def test_cluster_name(api: ApiClient, broker: Broker) -> None:
    assert api.get("/api/cluster-name").json() == {"name": broker.cluster_name}
    assert api.put("/api/cluster-name", json={"name": "blue"}).status_code == 204
    assert api.get("/api/cluster-name").json() == {"name": "blue"}
    assert api.get("/api/overview").json()["cluster_name"] == "blue"
    assert api.put("/api/cluster-name", json={}).json()["reason"] == "[{key_missing,name}]"
    mgmt = add_user(api, "m", "management")
    assert mgmt.put("/api/cluster-name", json={"name": "x"}).status_code == 401


def test_nodes(api: ApiClient, broker: Broker) -> None:
    nodes = api.get("/api/nodes").json()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["name"] == broker.cluster_name and node["running"] is True
    assert node["mem_used"] > 0 and node["mem_limit"] == broker.memory_alarm.watermark
    assert api.get(f"/api/nodes/{broker.cluster_name}?columns=name").json() == {
        "name": broker.cluster_name}
    assert api.get("/api/nodes/rabbit@elsewhere").status_code == 404


# --- vhosts -------------------------------------------------------------------------------

def test_vhost_lifecycle(api: ApiClient, broker: Broker) -> None:
    r = api.put("/api/vhosts/a%2Fb", json={"description": "slash", "tags": "x,y"})
    assert r.status_code == 201
    assert "a/b" in broker.vhosts
    assert ("guest", "a/b") in broker.access.permissions  # the creator may use it
    shown = api.get("/api/vhosts/a%2Fb").json()
    assert shown["name"] == "a/b" and shown["tags"] == ["x", "y"]
    assert shown["metadata"] == {"description": "slash", "tags": ["x", "y"]}
    assert shown["default_queue_type"] == "undefined" and shown["tracing"] is False
    assert api.put("/api/vhosts/a%2Fb", json={"description": "again"}).status_code == 204
    assert api.get("/api/vhosts/a%2Fb").json()["description"] == "again"
    assert api.put("/api/vhosts/a%2Fb", json={"tags": 5}).status_code == 400
    assert api.delete("/api/vhosts/a%2Fb").status_code == 204
    assert "a/b" not in broker.vhosts
    r = api.delete("/api/vhosts/a%2Fb")
    assert (r.status_code, r.json()) == (404, NOT_FOUND)
    assert api.get("/api/vhosts/a%2Fb").status_code == 404


def test_vhost_shows_its_queue_depths(api: ApiClient, broker: Broker) -> None:
    client = Client(broker)
    client.open_channel(1)
    client.send(commands.Queue.Declare(queue="q1"), 1)
    client.publish(1, "", "q1", b"hello")
    shown = api.get("/api/vhosts/%2F").json()
    assert shown["messages"] == 1 and shown["messages_ready"] == 1
    assert shown["messages_details"] == {"rate": 0.0}
    assert "recv_oct" in shown  # a connection is open there


def test_deleting_a_vhost_closes_its_connections(api: ApiClient, broker: Broker) -> None:
    api.put("/api/vhosts/v", json={})
    client = Client(broker, vhost="v")
    assert client.conn in broker.connections
    api.delete("/api/vhosts/v")
    assert client.conn.state in (ConnState.CLOSING, ConnState.CLOSED)


# --- users --------------------------------------------------------------------------------

def test_user_lifecycle(api: ApiClient, broker: Broker) -> None:
    assert api.put("/api/users/bob", json={"password": "pw", "tags": "management"}
                   ).status_code == 201
    shown = api.get("/api/users/bob").json()
    assert set(shown) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert shown["tags"] == ["management"]
    assert api.get("/api/whoami", auth=("bob", "pw")).status_code == 200
    # tags only: the password is cleared (RabbitMQ's put_user)
    assert api.put("/api/users/bob", json={"tags": ["monitoring"]}).status_code == 204
    assert api.get("/api/users/bob").json()["password_hash"] == ""
    assert api.get("/api/whoami", auth=("bob", "pw")).status_code == 401
    hashed = base64.b64encode(hash_password("s3cret")).decode()
    assert api.put("/api/users/bob", json={"password_hash": hashed, "tags": "management"}
                   ).status_code == 204
    assert api.get("/api/whoami", auth=("bob", "s3cret")).status_code == 200
    assert [u["name"] for u in api.get("/api/users").json()] == ["bob", "guest"]
    assert api.delete("/api/users/bob").status_code == 204
    assert "bob" not in broker.access.users
    assert api.delete("/api/users/bob").status_code == 404


@pytest.mark.parametrize("body,reason", [
    ({"password": "x"}, "tags_not_present"),
    ({"password": "x", "password_hash": "abc", "tags": ""},
     "both_password_and_password_hash_are_provided"),
    ({"password_hash": "not b64!", "tags": ""}, ["not_base64", "not b64!"]),
])
def test_user_errors(api: ApiClient, body: dict[str, Any], reason: Any) -> None:
    r = api.put("/api/users/x", json=body)
    assert (r.status_code, r.json()) == (400, {"error": "bad_request", "reason": reason})


def test_deleting_a_user_closes_its_connections(api: ApiClient, broker: Broker) -> None:
    broker.access.put_user(User.with_password("carol", "pw"))
    broker.access.set_permissions("carol", "/", ".*", ".*", ".*")
    client = Client(broker, user="carol", password="pw")
    assert client.conn in broker.connections
    api.delete("/api/users/carol")
    assert client.conn.state in (ConnState.CLOSING, ConnState.CLOSED)


def test_users_without_permissions_and_bulk_delete(api: ApiClient, broker: Broker) -> None:
    for name in ("a", "b", "c"):
        api.put(f"/api/users/{name}", json={"password": "pw", "tags": ""})
    api.put("/api/permissions/%2F/a", json={"configure": "", "write": "", "read": ""})
    assert [u["name"] for u in api.get("/api/users/without-permissions").json()] == ["b", "c"]
    r = api.post("/api/users/bulk-delete", json={"users": ["b", "nobody", "c"]})
    assert (r.status_code, r.json()["reason"]) == (400, ["no_such_user", "nobody"])
    assert "b" not in broker.access.users and "c" in broker.access.users
    assert api.post("/api/users/bulk-delete", json={"users": ["c"]}).status_code == 204
    r = api.post("/api/users/bulk-delete", json={})
    assert r.json()["reason"] == "[{key_missing,users}]"


# --- permissions --------------------------------------------------------------------------

def test_permissions(api: ApiClient, broker: Broker) -> None:
    api.put("/api/users/u", json={"password": "pw", "tags": ""})
    path = "/api/permissions/%2F/u"
    assert api.put(path, json={"configure": "^a", "write": ".*", "read": ""}).status_code == 201
    assert api.put(path, json={"configure": ".*", "write": ".*", "read": ".*"}
                   ).status_code == 204
    assert api.get(path).json() == {"user": "u", "vhost": "/", "configure": ".*",
                                    "write": ".*", "read": ".*"}
    assert [p["user"] for p in api.get("/api/vhosts/%2F/permissions").json()] == ["guest", "u"]
    assert [p["vhost"] for p in api.get("/api/users/u/permissions").json()] == ["/"]
    r = api.put(path, json={"configure": ".*"})
    assert r.json()["reason"] == "[{key_missing,write},{key_missing,read}]"
    assert api.put(path, json={"configure": "(", "write": "", "read": ""}).status_code == 400
    r = api.put("/api/permissions/nope/u", json={"configure": "", "write": "", "read": ""})
    assert (r.status_code, r.json()["reason"]) == (400, "vhost_or_user_not_found")
    assert api.delete(path).status_code == 204
    assert ("u", "/") not in broker.access.permissions
    assert api.delete(path).status_code == 404
    assert api.get("/api/users/nobody/permissions").status_code == 404


def test_topic_permissions(api: ApiClient, broker: Broker) -> None:
    api.put("/api/users/u", json={"password": "pw", "tags": ""})
    path = "/api/topic-permissions/%2F/u"
    assert api.put(path, json={"exchange": "amq.topic", "write": "^a", "read": ""}
                   ).status_code == 201
    assert api.put(path, json={"exchange": "x", "write": "", "read": ""}).status_code == 204
    assert [p["exchange"] for p in api.get(path).json()] == ["amq.topic", "x"]
    assert len(api.get("/api/topic-permissions").json()) == 2
    assert api.put(path, json={"write": "", "read": ""}).json()["reason"] == \
        "[{key_missing,exchange}]"
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404


# --- policies and parameters ---------------------------------------------------------------

def test_policies(api: ApiClient, broker: Broker) -> None:
    path = "/api/policies/%2F/p"
    assert api.put(path, json={"pattern": "^a", "definition": {"max-length": 5}}
                   ).status_code == 201
    assert api.get(path).json() == {"vhost": "/", "name": "p", "pattern": "^a",
                                    "apply-to": "all", "definition": {"max-length": 5},
                                    "priority": 0}
    assert api.put(path, json={"pattern": "^a", "definition": {"max-length": 6},
                               "priority": 2, "apply-to": "queues"}).status_code == 204
    assert broker.runtime.policies[("/", "p")]["priority"] == 2
    assert len(api.get("/api/policies/%2F").json()) == 1
    for bad in ({"pattern": "^a"}, {"pattern": "(", "definition": {"max-length": 1}},
                {"pattern": "^a", "definition": {"nope": 1}},
                {"pattern": "^a", "definition": {"max-length": -1}},
                {"pattern": "^a", "definition": {"max-length": 1}, "apply-to": "x"},
                {"pattern": "^a", "definition": {"max-length": 1}, "priority": "x"}):
        r = api.put(path, json=bad)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", bad
    r = api.put("/api/policies/nope/p", json={"pattern": "^a", "definition": {"expires": 1}})
    assert (r.status_code, r.json()) == (404, {"error": "not_found",
                                               "reason": "vhost_not_found"})
    assert api.delete(path).status_code == 204
    assert api.delete(path).status_code == 404


def test_operator_policies(api: ApiClient, broker: Broker) -> None:
    path = "/api/operator-policies/%2F/op"
    assert api.put(path, json={"pattern": "^", "definition": {"max-length": 9}}
                   ).status_code == 201
    assert api.get(path).json()["definition"] == {"max-length": 9}
    assert ("/", "operator_policy", "op") in broker.runtime.parameters
    assert api.put(path, json={"pattern": "^", "definition": {"alternate-exchange": "x"}}
                   ).status_code == 400
    assert api.delete(path).status_code == 204


def test_parameters_and_global_parameters(api: ApiClient, broker: Broker) -> None:
    path = "/api/parameters/vhost-limits/%2F/limits"
    assert api.put(path, json={"value": {"max-connections": 3}}).status_code == 201
    assert api.get(path).json() == {"value": {"max-connections": 3}, "vhost": "/",
                                    "component": "vhost-limits", "name": "limits"}
    assert len(api.get("/api/parameters/vhost-limits").json()) == 1
    assert api.put(path, json={}).json()["reason"] == "[{key_missing,value}]"
    assert api.put("/api/parameters/nope/%2F/x", json={"value": 1}).status_code == 400
    assert api.delete(path).status_code == 204
    assert api.put("/api/global-parameters/g", json={"value": [1, 2]}).status_code == 201
    names = [p["name"] for p in api.get("/api/global-parameters").json()]
    assert names == ["cluster_name", "g"]
    assert api.get("/api/global-parameters/g").json() == {"name": "g", "value": [1, 2]}
    assert api.delete("/api/global-parameters/g").status_code == 204
    assert "g" not in broker.runtime.global_parameters


def test_vhost_limits(api: ApiClient, broker: Broker) -> None:
    assert api.get("/api/vhost-limits").json() == []
    assert api.put("/api/vhost-limits/%2F/max-queues", json={"value": 5}).status_code == 204
    assert api.put("/api/vhost-limits/%2F/max-connections", json={"value": 7}
                   ).status_code == 204
    assert api.get("/api/vhost-limits/%2F").json() == [
        {"vhost": "/", "value": {"max-queues": 5, "max-connections": 7}}]
    assert broker.runtime.parameters[("/", "vhost-limits", "limits")]["value"] == {
        "max-queues": 5, "max-connections": 7}
    assert api.put("/api/vhost-limits/%2F/bogus", json={"value": 1}).status_code == 400
    assert api.put("/api/vhost-limits/%2F/max-queues", json={"value": "x"}).status_code == 400
    assert api.delete("/api/vhost-limits/%2F/max-queues").status_code == 204
    assert api.delete("/api/vhost-limits/%2F/max-connections").status_code == 204
    assert ("/", "vhost-limits", "limits") not in broker.runtime.parameters
    assert api.get("/api/vhost-limits/nope").status_code == 404


# --- definitions --------------------------------------------------------------------------

def test_definitions_round_trip_as_json_and_as_an_upload(api: ApiClient) -> None:
    api.put("/api/vhosts/v", json={"description": "mine"})
    api.put("/api/users/u", json={"password": "pw", "tags": "management"})
    api.put("/api/policies/v/p", json={"pattern": "^", "definition": {"max-length": 1}})
    exported = api.get("/api/definitions?download=defs.json")
    assert exported.headers["content-disposition"] == "attachment; filename=defs.json"
    doc = exported.json()
    for section in ("users", "vhosts", "permissions", "topic_permissions", "parameters",
                    "global_parameters", "policies", "queues", "exchanges", "bindings"):
        assert section in doc

    fresh = ApiClient(create_app(make_broker(), modules=CORE))
    assert fresh.post("/api/definitions", json=doc).status_code == 204
    assert fresh.get("/api/vhosts/v").json()["description"] == "mine"
    assert fresh.get("/api/whoami", auth=("u", "pw")).status_code == 200

    other = ApiClient(create_app(make_broker(), modules=CORE))
    r = other.post("/api/definitions", files={"file": ("defs.json", json.dumps(doc))},
                   data={"redirect": "../../#/"})
    assert (r.status_code, r.headers["location"]) == (303, "../../#/")
    assert other.get("/api/policies/v/p").status_code == 200
    r = other.post("/api/definitions", files={"file": ("defs.txt", b"{}")})
    assert r.json()["reason"] == "unsupported_file_extension"


def test_vhost_definitions(api: ApiClient, broker: Broker) -> None:
    api.put("/api/vhosts/v", json={})
    client = Client(broker, vhost="v")
    client.open_channel(1)
    client.send(commands.Queue.Declare(queue="dq", durable=True), 1)
    one = api.get("/api/definitions/v").json()
    assert set(one) == {"rabbit_version", "parameters", "policies", "queues", "exchanges",
                        "bindings"}
    assert [q["name"] for q in one["queues"]] == ["dq"]
    assert "vhost" not in one["queues"][0]
    assert api.get("/api/definitions/nope").json() == {"error": "bad_request",
                                                       "reason": "vhost_not_found"}
    api.put("/api/vhosts/w", json={})
    assert api.post("/api/definitions/w", json=one).status_code == 204
    assert "dq" in broker.vhosts["w"].queues


def test_definitions_errors(api: ApiClient) -> None:
    r = api.post("/api/definitions", content=b"{nope",
                 headers={"content-type": "application/json"})
    assert r.json() == {"error": "bad_request", "reason": "failed_to_parse_json"}
    r = api.post("/api/definitions", json={"queues": [{"name": "q"}]})
    assert r.status_code == 400 and "queue 'q'" in r.json()["reason"]
    r = api.post("/api/definitions", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert api.post("/api/definitions/nope", json={}).status_code == 404


# --- health -------------------------------------------------------------------------------

def test_health_checks(api: ApiClient, broker: Broker) -> None:
    assert api.get("/api/health/checks/alarms").json() == {"status": "ok"}
    assert api.get("/api/health/checks/virtual-hosts").json() == {"status": "ok"}
    assert api.get("/api/aliveness-test/%2F").json() == {"status": "ok"}
    assert api.get("/api/aliveness-test/nope").status_code == 404
    port = broker.config.port
    assert api.get(f"/api/health/checks/port-listener/{port}").json() == {
        "status": "ok", "port": port}
    r = api.get("/api/health/checks/port-listener/1")
    assert r.status_code == 503
    assert r.json()["reason"] == "No active listener" and r.json()["missing"] == 1
    assert api.get("/api/health/checks/port-listener/x").status_code == 400
    assert api.get("/api/health/checks/protocol-listener/amqp").status_code == 200
    assert api.get("/api/health/checks/protocol-listener/mqtt").status_code == 503
    broker.alarms = {"memory"}
    r = api.get("/api/health/checks/local-alarms")
    assert r.status_code == 503
    assert r.json()["alarms"] == [{"node": broker.cluster_name, "resource": "memory"}]


# --- the server: a broker subprocess with its management port -------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Any:
    proc = BrokerProcess(data_dir=None, log_path=tmp_path / "broker.log",
                         management_port=free_port())
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_served_in_the_broker_and_stopped_with_it(served: BrokerProcess) -> None:
    base = served.management_url
    r = httpx.get(f"{base}/api/overview", auth=("guest", "guest"), timeout=10)
    assert r.status_code == 200
    listeners = {(one["protocol"], one["port"]) for one in r.json()["listeners"]}
    assert ("amqp", served.port) in listeners and ("http", served.management_port) in listeners
    r = httpx.put(f"{base}/api/vhosts/%2Fx", auth=("guest", "guest"), timeout=10)
    assert r.status_code == 201
    assert served.stop() == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/api/overview", timeout=2)


def test_an_embedded_broker_gives_its_management_url() -> None:
    from amqp_broker.testing import running_broker
    with running_broker() as plain:
        assert plain.management_url is None
    port = free_port()
    with running_broker(management_port=port) as broker:
        assert broker.management_url == f"http://127.0.0.1:{port}/"
        r = httpx.get(f"{broker.management_url}api/whoami", auth=("guest", "guest"), timeout=10)
        assert r.json()["name"] == "guest"


def test_a_busy_management_port_stops_start_up_with_one_line(tmp_path: Path) -> None:
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", "0",
             "--data-dir", "none", "--metrics-port", "0", "--management-port", str(port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "cannot start" in output and f"management listener on 127.0.0.1:{port}" in output
    assert "Traceback" not in output


RABBITMQADMIN = shutil.which("rabbitmqadmin")


@pytest.mark.skipif(RABBITMQADMIN is None,
                    reason="rabbitmqadmin not installed (Debian package rabbitmq-server)")
def test_rabbitmqadmin(served: BrokerProcess, tmp_path: Path) -> None:
    def admin(*args: str) -> str:
        assert RABBITMQADMIN is not None
        done = subprocess.run([RABBITMQADMIN, "-H", "127.0.0.1", "-P",
                               str(served.management_port), "-u", "guest", "-p", "guest",
                               *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    assert "/" in admin("list", "vhosts")
    admin("declare", "vhost", "name=tools")
    admin("declare", "user", "name=ops", "password=pw", "tags=management")
    admin("declare", "permission", "vhost=tools", "user=ops", "configure=.*", "write=.*",
          "read=.*")
    assert "ops" in admin("list", "users")
    assert "tools" in admin("list", "permissions")
    admin("declare", "policy", "--vhost=tools", "name=p", "pattern=^",
          'definition={"max-length":1}')
    assert "p" in admin("-V", "tools", "list", "policies")
    exported = tmp_path / "defs.json"
    admin("export", str(exported))
    doc = json.loads(exported.read_text())
    assert any(v["name"] == "tools" for v in doc["vhosts"])
    admin("delete", "vhost", "name=tools")
    assert "tools" not in admin("list", "vhosts", "name")
    admin("import", str(exported))
    assert "tools" in admin("list", "vhosts", "name")
    assert "rabbitmq_version" in admin("show", "overview") or admin("show", "overview")
    admin("delete", "user", "name=ops")
