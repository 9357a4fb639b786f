"""`amqp-broker ctl` (amqp_broker/ctl.py).

Most tests run the command against a stub HTTP server (http.server in a thread) that
answers with RabbitMQ 3.10.8's recorded JSON (tests/fixtures/mgmt, see record.py there)
and records each request, so they check what every verb sends and what it prints
whatever our management API can do yet. The last tests run it against our own broker's
API (running_broker with a management port), each skipped while the resource module it
needs has not landed.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import pathlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from amqp_broker import cli, ctl, ctl_verbs
from tests.helpers import free_port

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "mgmt"
STATUS = json.loads((FIXTURES / "_status.json").read_text())
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@dataclass
class Request:
    method: str
    path: str  # with the query string, still percent-encoded
    headers: dict[str, str]  # names in lower case
    body: Any  # parsed JSON, or None


@dataclass
class Stub:
    """A management API that answers from a table and records what it was asked."""

    url: str = ""
    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    raw: dict[tuple[str, str], bytes] = field(default_factory=dict)  # non-JSON answers

    def answer(self, method: str, path: str, status: int, body: Any = None) -> None:
        self.routes[(method, path)] = (status, body)

    def last(self) -> Request:
        return self.requests[-1]


class _Current:
    stub = Stub()  # the test's stub; one server serves the whole module


class Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        stub = _Current.stub
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        stub.requests.append(Request(self.command, self.path,
                                     {k.lower(): v for k, v in self.headers.items()},
                                     json.loads(data) if data else None))
        key = (self.command, self.path)
        if key in stub.raw:
            payload, status = stub.raw[key], 200
        else:
            status, body = stub.routes.get(key, (404, NOT_FOUND))
            payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def stub(stub_url: str) -> Stub:
    state = Stub(url=stub_url)
    for name, status in STATUS.items():  # GET /api/<recorded path> answers as RabbitMQ did
        if name == "unauthorized":
            continue
        path = "/api/" + name.replace("_", "/").replace("aliveness-test/default",
                                                        "aliveness-test/%2F")
        path = path.replace("queues/default/", "queues/%2F/")
        state.answer("GET", path, status, fixture(name))
    _Current.stub = state
    return state


@pytest.fixture(autouse=True)
def _no_ctl_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ctl.ENV_URL, ctl.ENV_USER, ctl.ENV_PASSWORD, *ctl.BROKER_USER_VARIABLES,
                 *ctl.BROKER_PASSWORD_VARIABLES, ctl.BROKER_PORT_VARIABLE):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(capsys: pytest.CaptureFixture[str], *args: str, url: str | None = None) -> Run:
    argv = ["ctl", *(["--url", url] if url else []), *args]
    code = cli.main(argv)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


# --- ping and status: the probes ----------------------------------------------------------

def test_ping_healthy(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "ping", url=stub.url)
    assert (result.code, result.out, result.err) == (0, "ok\n", "")
    assert stub.last().method == "GET"
    assert stub.last().path == "/api/health/checks/virtual-hosts"


def test_ping_with_vhost_runs_the_aliveness_test(stub: Stub,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "ping", "--vhost", "/", url=stub.url).code == 0
    assert stub.last().path == "/api/aliveness-test/%2F"
    result = run(capsys, "ping", "-p", "nope", url=stub.url)
    assert result.code == 1
    assert result.err == "amqp-broker ctl: vhost 'nope' not found\n"


def test_ping_failed_check(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/health/checks/virtual-hosts", 503,
                {"status": "failed", "reason": "Some virtual hosts are down",
                 "virtual-hosts": ["app"]})
    result = run(capsys, "ping", url=stub.url)
    assert result.code == 1
    assert result.err == ("amqp-broker ctl: health check failed: Some virtual hosts are "
                          "down: app\n")
    result = run(capsys, "--json", "ping", url=stub.url)
    assert result.code == 1
    assert result.json()["status"] == "failed"


def test_ping_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = run(capsys, "ping", url=url)
    assert result.code == 1
    assert result.out == ""
    assert result.err == f"amqp-broker ctl: cannot reach {url}: connection refused\n"


def test_ping_wrong_password(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/health/checks/virtual-hosts", 401, fixture("unauthorized"))
    result = run(capsys, "ping", url=stub.url)
    assert result.code == 1
    assert result.err.startswith(f"amqp-broker ctl: {stub.url}: user 'guest' refused "
                                 "(Login failed); check --user/--password")


def test_ping_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = run(capsys, "--timeout", "0.2", "ping", url=url)
    assert result.code == 1
    assert result.err == f"amqp-broker ctl: cannot reach {url}: no answer within 0.2 s\n"


def test_ping_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:  # an AMQP port: answers with a protocol header
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def answer() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.recv(65536)
                peer.sendall(b"AMQP\x00\x00\x09\x01")

        thread = threading.Thread(target=answer)
        thread.start()
        result = run(capsys, "ping", url=url)
        thread.join()
    assert result.code == 1
    assert result.err.startswith(f"amqp-broker ctl: cannot reach {url}: ")
    assert "HTTP" in result.err
    assert "Traceback" not in result.err


def test_status_healthy(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "status", url=stub.url)
    assert result.code == 0, result.err
    lines = dict(line.split(None, 1) for line in result.out.splitlines()
                 if not line.startswith(("disk free",)))
    assert lines["product"] == "RabbitMQ 3.10.8"
    assert lines["node"] == "reference@localhost"
    assert "amqp 127.0.0.1:5673" in lines["listeners"]
    totals = fixture("overview")["object_totals"]
    assert lines["queues"] == str(totals["queues"])
    assert lines["connections"] == str(totals["connections"])
    assert lines["alarms"] == "none"
    assert "memory" in lines and "uptime" in lines


def test_status_with_an_alarm(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/health/checks/alarms", 503,
                fixture("health_checks_alarms_failed"))
    result = run(capsys, "status", url=stub.url)
    assert result.code == 1
    assert "alarms       memory alarm on reference@localhost" in result.out
    result = run(capsys, "status", "--json", url=stub.url)
    assert result.code == 1
    data = result.json()
    assert data["ok"] is False
    assert data["alarms"] == [{"node": "reference@localhost", "resource": "memory"}]
    assert data["overview"]["product_name"] == "RabbitMQ"
    assert data["nodes"][0]["name"] == "reference@localhost"


def test_status_json_healthy(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "status", "--json", url=stub.url)
    assert result.code == 0
    data = result.json()
    assert (data["ok"], data["alarms"]) == (True, [])
    assert data["overview"] == fixture("overview")
    assert set(data["nodes"][0]) <= set(ctl_verbs.NODE_FIELDS)


def test_status_reads_the_nodes_alarm_flags_without_the_health_check(
        stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    del stub.routes[("GET", "/api/health/checks/alarms")]  # a server without the check
    nodes = fixture("nodes")
    nodes[0]["disk_free_alarm"] = True
    stub.answer("GET", "/api/nodes", 200, nodes)
    result = run(capsys, "status", url=stub.url)
    assert result.code == 1
    assert "disk space alarm on reference@localhost" in result.out


def test_status_without_nodes_access(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/nodes", 401, {"error": "not_authorized",
                                           "reason": "Not monitor user"})
    result = run(capsys, "status", url=stub.url)
    assert result.code == 0
    assert "memory" not in result.out
    assert "alarms  " in result.out


def test_status_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "status", url=f"http://127.0.0.1:{free_port()}")
    assert result.code == 1
    assert "connection refused" in result.err


# --- lists -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(ctl_verbs.LISTINGS))
def test_list_table(kind: str, stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "list", kind, url=stub.url)
    assert result.code == 0, result.err
    assert stub.last().path == f"/api/{kind}"
    lines = result.out.splitlines()
    headers = [header for header, _ in ctl_verbs.LISTINGS[kind].columns]
    assert lines[0].split() == headers
    assert len(lines) == 1 + len(fixture(kind))


@pytest.mark.parametrize("kind", sorted(ctl_verbs.LISTINGS))
def test_list_json(kind: str, stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "list", kind, "--json", url=stub.url)
    assert result.code == 0
    assert result.json() == fixture(kind)


def test_list_queues_rows(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "list", "queues", url=stub.url).out
    queue = next(q for q in fixture("queues") if q["name"] == "work")
    row = next(line.split() for line in out.splitlines() if " work " in line)
    assert row[:5] == [queue["vhost"], "work", queue["type"], "true", "false"]
    assert row[5] == str(queue["messages"])


def test_list_columns(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "list", "queues", "name", "messages", "message_stats.publish",
                 url=stub.url)
    lines = result.out.splitlines()
    assert lines[0].split() == ["name", "messages", "message_stats.publish"]
    # columns may follow options too, as with rabbitmqctl
    again = run(capsys, "list", "queues", "--vhost", "/", "name", "messages", url=stub.url)
    assert again.code == 1  # the stub has no /api/queues/%2F
    stub.answer("GET", "/api/queues/%2F", 200, fixture("queues"))
    again = run(capsys, "list", "queues", "--vhost", "/", "name", "messages", url=stub.url)
    assert again.out.splitlines()[0].split() == ["name", "messages"]
    rows = run(capsys, "--json", "list", "queues", "name", "nothing.here", url=stub.url).json()
    assert rows[0] == {"name": fixture("queues")[0]["name"], "nothing.here": None}


def test_list_numbers_right_aligned(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/queues", 200, [{"name": "a", "messages": 5},
                                            {"name": "bbbbbbbbbbbb", "messages": 12345}])
    out = run(capsys, "list", "queues", "name", "messages", url=stub.url).out
    assert out == ("name          messages\n"
                   "a                    5\n"
                   "bbbbbbbbbbbb     12345\n")


@pytest.mark.parametrize(("kind", "path"), [
    ("queues", "/api/queues/app"), ("exchanges", "/api/exchanges/app"),
    ("bindings", "/api/bindings/app"), ("connections", "/api/vhosts/app/connections"),
    ("channels", "/api/vhosts/app/channels"), ("consumers", "/api/consumers/app"),
    ("permissions", "/api/vhosts/app/permissions"),
])
def test_list_in_one_vhost(kind: str, path: str, stub: Stub,
                           capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", path, 200, [])
    result = run(capsys, "list", kind, "-p", "app", url=stub.url)
    assert result.code == 0, result.err
    assert stub.last().path == path


def test_list_unknown_vhost(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "list", "queues", "-p", "a/b", url=stub.url)
    assert stub.last().path == "/api/queues/a%2Fb"
    assert (result.code, result.err) == (1, "amqp-broker ctl: vhost 'a/b' not found\n")


def test_list_users_takes_no_vhost(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "list", "users", "-p", "/", url=stub.url)
    assert result.code == 2
    assert "--vhost does not apply to list users" in result.err
    assert stub.requests == []


def test_list_escapes_control_characters(stub: Stub,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/queues", 200, [{"name": "evil\nname", "messages": 1}])
    out = run(capsys, "list", "queues", "name", "messages", url=stub.url).out
    assert out.splitlines()[1].split() == ["evil\\nname", "1"]


def test_rabbitmqctl_spellings(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "list_queues", "name", url=stub.url)
    assert result.code == 0
    assert stub.last().path == "/api/queues"
    assert result.out.splitlines()[0] == "name"
    assert run(capsys, "--json", "list_users", url=stub.url).json() == fixture("users")
    stub.answer("PUT", "/api/users/bob", 201)
    assert run(capsys, "add_user", "bob", "pw", url=stub.url).code == 0
    assert stub.last().method == "PUT"


# --- what each verb sends -------------------------------------------------------------------

VERBS = [
    (["add-user", "bob", "s3cret"], "PUT", "/api/users/bob",
     {"password": "s3cret", "tags": ""}, {}),
    (["add-user", "bob", "s3cret", "--tags", "administrator,monitoring"], "PUT",
     "/api/users/bob", {"password": "s3cret", "tags": "administrator,monitoring"}, {}),
    (["add-user", "nopw", "--password-hash", "AAAA"], "PUT", "/api/users/nopw",
     {"password_hash": "AAAA", "tags": ""}, {}),
    (["delete-user", "a b"], "DELETE", "/api/users/a%20b", None, {}),
    (["add-vhost", "staging"], "PUT", "/api/vhosts/staging", {}, {}),
    (["add-vhost", "staging", "--description", "for tests", "--tags", "a,b",
      "--default-queue-type", "quorum"], "PUT", "/api/vhosts/staging",
     {"description": "for tests", "tags": "a,b", "default_queue_type": "quorum"}, {}),
    (["delete-vhost", "/"], "DELETE", "/api/vhosts/%2F", None, {}),
    (["set-permissions", "bob", ".*", "^bob-.*", ""], "PUT", "/api/permissions/%2F/bob",
     {"configure": ".*", "write": "^bob-.*", "read": ""}, {}),
    (["set-permissions", "-p", "app", "bob", "", "", ".*"], "PUT",
     "/api/permissions/app/bob", {"configure": "", "write": "", "read": ".*"}, {}),
    (["clear-permissions", "bob", "--vhost", "app"], "DELETE", "/api/permissions/app/bob",
     None, {}),
    (["purge-queue", "work"], "DELETE", "/api/queues/%2F/work/contents", None, {}),
    (["purge-queue", "q/1", "-p", "app"], "DELETE", "/api/queues/app/q%2F1/contents", None,
     {}),
    (["delete-queue", "work"], "DELETE", "/api/queues/%2F/work", None, {}),
    (["delete-queue", "work", "--if-empty", "--if-unused"], "DELETE",
     "/api/queues/%2F/work?if-empty=true&if-unused=true", None, {}),
    (["close-connection", "127.0.0.1:5 -> 127.0.0.1:5672"], "DELETE",
     "/api/connections/127.0.0.1%3A5%20-%3E%20127.0.0.1%3A5672", None, {}),
    (["close-connection", "c1", "--reason", "maintenance"], "DELETE", "/api/connections/c1",
     None, {"x-reason": "maintenance"}),
    (["set-policy", "cap", "^work", '{"max-length": 10}'], "PUT", "/api/policies/%2F/cap",
     {"pattern": "^work", "definition": {"max-length": 10}, "priority": 0, "apply-to": "all"},
     {}),
    (["set_policy", "-p", "app", "--priority", "3", "--apply-to", "queues", "cap", ".*",
      '{"message-ttl": 5}'], "PUT", "/api/policies/app/cap",
     {"pattern": ".*", "definition": {"message-ttl": 5}, "priority": 3, "apply-to": "queues"},
     {}),
    (["clear-policy", "cap"], "DELETE", "/api/policies/%2F/cap", None, {}),
    (["set-operator-policy", "ops", "^", '{"max-length": 1}'], "PUT",
     "/api/operator-policies/%2F/ops",
     {"pattern": "^", "definition": {"max-length": 1}, "priority": 0, "apply-to": "all"}, {}),
    (["clear-operator-policy", "ops", "-p", "app"], "DELETE", "/api/operator-policies/app/ops",
     None, {}),
]


@pytest.mark.parametrize(("args", "method", "path", "body", "headers"), VERBS)
def test_verb_request(args: list[str], method: str, path: str, body: Any,
                      headers: dict[str, str], stub: Stub,
                      capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer(method, path, 204)
    result = run(capsys, *args, url=stub.url)
    assert result.code == 0, result.err
    assert len(stub.requests) == 1
    request = stub.last()
    assert (request.method, request.path, request.body) == (method, path, body)
    for name, value in headers.items():
        assert request.headers[name] == value
    if "x-reason" not in headers:
        assert "x-reason" not in request.headers
    if body is not None:
        assert request.headers["content-type"] == "application/json"
    assert result.out.count("\n") == 1  # one confirmation line
    assert run(capsys, "-q", *args, url=stub.url).out == ""
    assert run(capsys, "--json", *args, url=stub.url).out == ""


def test_close_reason_beyond_latin1(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("DELETE", "/api/connections/c1", 204)
    assert run(capsys, "close-connection", "c1", "--reason", "maintenance \u2014 ok",
               url=stub.url).code == 0
    sent = stub.last().headers["x-reason"]  # http.server reads header bytes as Latin-1
    assert sent.encode("latin-1").decode() == "maintenance \u2014 ok"
    result = run(capsys, "close-connection", "c1", "--reason", "two\nlines", url=stub.url)
    assert result.code == 2
    assert "--reason must be one line" in result.err


def test_password_from_stdin(stub: Stub, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    stub.answer("PUT", "/api/users/bob", 201)
    assert run(capsys, "add-user", "bob", "-", url=stub.url).code == 0
    assert stub.last().body == {"password": "from stdin", "tags": ""}


@pytest.mark.parametrize(("args", "message"), [
    (["delete-user", "ghost"], "user 'ghost' not found"),
    (["delete-vhost", "ghost"], "vhost 'ghost' not found"),
    (["delete-queue", "ghost"], "queue 'ghost' in vhost '/' not found"),
    (["purge-queue", "ghost", "-p", "app"], "queue 'ghost' in vhost 'app' not found"),
    (["clear-permissions", "ghost"], "permissions of user 'ghost' in vhost '/' not found"),
    (["close-connection", "ghost"], "connection 'ghost' not found"),
    (["set-permissions", "-p", "ghost", "bob", "", "", ""], "vhost 'ghost' not found"),
])
def test_not_found(args: list[str], message: str, stub: Stub,
                   capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *args, url=stub.url)
    assert (result.code, result.out, result.err) == (1, "", f"amqp-broker ctl: {message}\n")


def test_bad_request_names_the_reason(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("DELETE", "/api/queues/%2F/work?if-empty=true", 400,
                {"error": "bad_request", "reason": "queue 'work' in vhost '/' is not empty"})
    result = run(capsys, "delete-queue", "work", "--if-empty", url=stub.url)
    assert result.code == 1
    assert result.err == ("amqp-broker ctl: DELETE /api/queues/%2F/work?if-empty=true: 400 "
                          "bad_request: queue 'work' in vhost '/' is not empty\n")


def test_not_json_answer(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.raw[("GET", "/api/overview")] = b"<html>hello</html>"
    result = run(capsys, "status", url=stub.url)
    assert result.code == 1
    assert "the answer is not JSON" in result.err
    assert "Traceback" not in result.err


# --- definitions ----------------------------------------------------------------------------

def test_export_definitions_to_stdout(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "export-definitions", url=stub.url)
    assert result.code == 0
    assert result.json() == fixture("definitions")
    assert stub.last().path == "/api/definitions"


def test_export_definitions_to_a_file(stub: Stub, capsys: pytest.CaptureFixture[str],
                                      tmp_path: pathlib.Path) -> None:
    target = tmp_path / "defs.json"
    result = run(capsys, "export-definitions", str(target), url=stub.url)
    assert result.code == 0
    assert result.out == f"definitions exported to {target}\n"
    assert json.loads(target.read_text()) == fixture("definitions")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defs.json"]


def test_export_definitions_of_a_vhost(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("GET", "/api/definitions/%2F", 200, {"queues": []})
    assert run(capsys, "export-definitions", "-p", "/", url=stub.url).json() == {"queues": []}
    result = run(capsys, "export-definitions", "-p", "ghost", url=stub.url)
    assert (result.code, result.err) == (1, "amqp-broker ctl: vhost 'ghost' not found\n")


def test_export_definitions_unwritable(stub: Stub, capsys: pytest.CaptureFixture[str],
                                       tmp_path: pathlib.Path) -> None:
    result = run(capsys, "export-definitions", str(tmp_path / "no" / "such" / "dir.json"),
                 url=stub.url)
    assert result.code == 1
    assert result.err.startswith("amqp-broker ctl: cannot write ")


def test_import_definitions_from_a_file(stub: Stub, capsys: pytest.CaptureFixture[str],
                                        tmp_path: pathlib.Path) -> None:
    source = tmp_path / "defs.json"
    source.write_text(json.dumps(fixture("definitions")))
    stub.answer("POST", "/api/definitions", 204)
    result = run(capsys, "import-definitions", str(source), url=stub.url)
    assert result.code == 0, result.err
    request = stub.last()
    assert (request.method, request.path) == ("POST", "/api/definitions")
    assert request.body == fixture("definitions")


def test_import_definitions_from_stdin_into_a_vhost(
        stub: Stub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"queues": []}'))
    stub.answer("POST", "/api/definitions/app", 204)
    result = run(capsys, "import-definitions", "-", "--vhost", "app", url=stub.url)
    assert result.code == 0, result.err
    assert stub.last().body == {"queues": []}


@pytest.mark.parametrize(("text", "message"), [
    ("{nope", "standard input is not JSON: Expecting property name enclosed in double "
              "quotes at line 1 column 2"),
    ("[1, 2]", "standard input: definitions are a JSON object, not list"),
])
def test_import_bad_definitions(text: str, message: str, stub: Stub,
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    result = run(capsys, "import-definitions", url=stub.url)
    assert (result.code, result.err) == (1, f"amqp-broker ctl: {message}\n")
    assert stub.requests == []


def test_import_missing_file(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "import-definitions", "/no/such/file.json", url=stub.url)
    assert result.err == ("amqp-broker ctl: cannot read /no/such/file.json: No such file or "
                          "directory\n")


def test_import_refused(stub: Stub, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("{}"))
    stub.answer("POST", "/api/definitions", 400,
                {"error": "bad_request", "reason": '["no_such_vhost", "nohost"]'})
    result = run(capsys, "import-definitions", url=stub.url)
    assert result.code == 1
    assert result.err.endswith('400 bad_request: ["no_such_vhost", "nohost"]\n')


# --- where and who --------------------------------------------------------------------------

def _login(request: Request) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


def test_credentials(stub: Stub, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "ping", url=stub.url)
    assert _login(stub.last()) == "guest:guest"
    run(capsys, "--user", "ops", "--password", "pw", "ping", url=stub.url)
    assert _login(stub.last()) == "ops:pw"
    run(capsys, "ping", "-u", "ops2", "--password", "pw2", url=stub.url)  # after the verb
    assert _login(stub.last()) == "ops2:pw2"
    monkeypatch.setenv(ctl.ENV_URL, stub.url)
    monkeypatch.setenv(ctl.ENV_USER, "env-user")
    monkeypatch.setenv(ctl.ENV_PASSWORD, "env-pw")
    assert run(capsys, "ping").code == 0
    assert _login(stub.last()) == "env-user:env-pw"
    run(capsys, "--password", "flag-pw", "ping")
    assert _login(stub.last()) == "env-user:flag-pw"
    host = stub.url.removeprefix("http://")
    monkeypatch.delenv(ctl.ENV_USER)
    monkeypatch.delenv(ctl.ENV_PASSWORD)
    assert run(capsys, "ping", url=f"http://url%40user:p%3Aw@{host}/").code == 0
    assert _login(stub.last()) == "url@user:p:w"


def test_the_brokers_own_variables(stub: Stub, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # inside the broker's container: its default user and management port, unconfigured
    port = stub.url.rpartition(":")[2]
    monkeypatch.setenv("AMQP_BROKER_MANAGEMENT_PORT", port)
    monkeypatch.setenv("RABBITMQ_DEFAULT_USER", "rabbit-user")
    monkeypatch.setenv("RABBITMQ_DEFAULT_PASS", "rabbit-pw")
    assert run(capsys, "ping").code == 0
    assert _login(stub.last()) == "rabbit-user:rabbit-pw"
    monkeypatch.setenv("AMQP_BROKER_DEFAULT_USER", "broker-user")  # wins, as in the broker
    monkeypatch.setenv("AMQP_BROKER_DEFAULT_PASS", "broker-pw")
    assert run(capsys, "ping").code == 0
    assert _login(stub.last()) == "broker-user:broker-pw"
    monkeypatch.setenv(ctl.ENV_USER, "ctl-user")  # the ctl variables win over both
    monkeypatch.setenv(ctl.ENV_PASSWORD, "ctl-pw")
    assert run(capsys, "ping").code == 0
    assert _login(stub.last()) == "ctl-user:ctl-pw"
    for off in ("0", "none", "99999"):  # disabled or not a port: the default URL stays
        monkeypatch.setenv("AMQP_BROKER_MANAGEMENT_PORT", off)
        assert ctl._default_url() == "http://127.0.0.1:15672"


def test_a_user_argument_is_not_the_login(stub: Stub,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("PUT", "/api/permissions/%2F/bob", 204)
    assert run(capsys, "set-permissions", "bob", ".*", ".*", ".*", url=stub.url).code == 0
    assert _login(stub.last()) == "guest:guest"


def test_url_path_prefix(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    # RabbitMQ's management.path_prefix: the API under /prefix/api
    stub.answer("GET", "/rabbit/api/health/checks/virtual-hosts", 200, {"status": "ok"})
    assert run(capsys, "ping", url=stub.url + "/rabbit/").code == 0
    assert stub.last().path == "/rabbit/api/health/checks/virtual-hosts"


# --- usage ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    ([], "a VERB is required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["list"], "the following arguments are required: KIND"),
    (["list", "widgets"], "invalid choice: 'widgets'"),
    (["--url", "ftp://host", "ping"], "--url must be http://HOST[:PORT]"),
    (["--url", "http://host:99999", "ping"], "--url has a bad port"),
    (["--timeout", "0", "ping"], "--timeout must be more than 0 seconds"),
    (["--timeout", "soon", "ping"], "invalid float value: 'soon'"),
    (["add-user", "bob"], "add-user takes a PASSWORD or --password-hash"),
    (["add-user", "bob", "pw", "--password-hash", "x"], "add-user takes a PASSWORD or"),
    (["ping", "extra"], "unrecognized arguments: extra"),
    (["delete-queue", "q", "--if-full"], "unrecognized arguments: --if-full"),
    (["list", "queues", "name", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_usage_errors(args: list[str], message: str,
                      capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *args)
    assert result.code == 2
    assert message in result.err
    assert "amqp-broker ctl" in result.err
    assert "Traceback" not in result.err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--help")
    assert result.code == 0
    for verb in ctl_verbs.VERBS:
        assert verb in result.out
    assert run(capsys, "list", "--help").code == 0


def test_normalize() -> None:
    assert ctl.normalize(["-p", "list_x", "list_queues", "name"]) == [
        "-p", "list_x", "list", "queues", "name"]
    assert ctl.normalize(["--json", "delete_user", "a_b"]) == ["--json", "delete-user", "a_b"]
    assert ctl.normalize(["list", "queues"]) == ["list", "queues"]
    assert ctl.normalize(["no_such_verb"]) == ["no_such_verb"]


# --- against our own broker -----------------------------------------------------------------

def _served(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(f"amqp_broker.management.{module}") is None:
            pytest.skip(f"the management API has no amqp_broker/management/{module}.py yet")


@pytest.fixture(scope="module")
def broker() -> Iterator[Any]:
    if importlib.util.find_spec("amqp_broker.management") is None:
        pytest.skip("the management API (amqp_broker/management) has not landed yet")
    from amqp_broker.testing import running_broker
    with running_broker(management_port=free_port()) as running:
        assert running.management_url is not None
        yield running


@pytest.fixture
def ours(broker: Any) -> str:
    return str(broker.management_url)


def test_ours_ping_and_status(ours: str, capsys: pytest.CaptureFixture[str]) -> None:
    _served("res_health", "res_overview")
    assert run(capsys, "ping", url=ours).code == 0
    assert run(capsys, "ping", "--vhost", "/", url=ours).code == 0
    result = run(capsys, "status", "--json", url=ours)
    assert result.code == 0, result.err
    assert result.json()["alarms"] == []
    table = run(capsys, "status", url=ours).out
    assert "alarms" in table and "listeners" in table


def test_ours_users_vhosts_permissions(ours: str, capsys: pytest.CaptureFixture[str]) -> None:
    _served("res_users", "res_vhosts", "res_permissions")
    assert run(capsys, "add-vhost", "ctl-v", url=ours).code == 0
    assert run(capsys, "add-user", "ctl-u", "pw", "--tags", "monitoring", url=ours).code == 0
    assert run(capsys, "set-permissions", "-p", "ctl-v", "ctl-u", ".*", "", ".*",
               url=ours).code == 0
    permissions = run(capsys, "--json", "list", "permissions", "-p", "ctl-v", url=ours).json()
    assert {"user": "ctl-u", "vhost": "ctl-v", "configure": ".*", "write": "",
            "read": ".*"} in [{k: p[k] for k in ("user", "vhost", "configure", "write", "read")}
                              for p in permissions]
    users = run(capsys, "--json", "list", "users", url=ours).json()
    assert "ctl-u" in [user["name"] for user in users]
    assert run(capsys, "-u", "ctl-u", "--password", "pw", "list", "vhosts", url=ours).code == 0
    assert run(capsys, "clear-permissions", "-p", "ctl-v", "ctl-u", url=ours).code == 0
    assert run(capsys, "delete-user", "ctl-u", url=ours).code == 0
    assert run(capsys, "delete-vhost", "ctl-v", url=ours).code == 0
    result = run(capsys, "delete-vhost", "ctl-v", url=ours)
    assert (result.code, result.err) == (1, "amqp-broker ctl: vhost 'ctl-v' not found\n")
    result = run(capsys, "--password", "wrong", "list", "users", url=ours)
    assert result.code == 1 and "refused" in result.err


def test_ours_queues_and_definitions(ours: str, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _served("res_queues", "res_definitions")
    definitions = {"queues": [{"name": "ctl-q", "vhost": "/", "durable": True,
                               "auto_delete": False, "arguments": {}}]}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(definitions)))
    assert run(capsys, "import-definitions", url=ours).code == 0
    table = run(capsys, "list", "queues", "name", "messages", url=ours).out
    assert "ctl-q" in table
    exported = run(capsys, "export-definitions", url=ours).json()
    assert "ctl-q" in [queue["name"] for queue in exported["queues"]]
    assert run(capsys, "purge-queue", "ctl-q", url=ours).code == 0
    assert run(capsys, "delete-queue", "ctl-q", url=ours).code == 0
    result = run(capsys, "delete-queue", "ctl-q", url=ours)
    assert (result.code, result.err) == (1, "amqp-broker ctl: queue 'ctl-q' in vhost '/' "
                                            "not found\n")


def test_ours_policies(ours: str, capsys: pytest.CaptureFixture[str]) -> None:
    _served("res_policies")
    assert run(capsys, "set-policy", "ctl-p", "^ctl-", '{"max-length": 5}', "--apply-to",
               "queues", url=ours).code == 0
    assert run(capsys, "set-operator-policy", "ctl-op", "^ctl-", '{"max-length": 2}',
               url=ours).code == 0
    listed = run(capsys, "--json", "list", "policies", url=ours).json()
    assert [(p["name"], p["apply-to"], p["definition"]) for p in listed] == [
        ("ctl-p", "queues", {"max-length": 5})]
    assert "ctl-op" in run(capsys, "list_operator_policies", url=ours).out
    result = run(capsys, "set-policy", "bad", "^", '{"max-length": -1}', url=ours)
    assert (result.code, result.err) == (
        1, "amqp-broker ctl: policy 'bad' refused: -1 is not a valid maximum length\n")
    result = run(capsys, "set-policy", "bad", "^", "{nope", url=ours)
    assert result.code == 2 and "DEFINITION is not JSON" in result.err
    assert run(capsys, "clear-policy", "ctl-p", url=ours).code == 0
    assert run(capsys, "clear-operator-policy", "ctl-op", url=ours).code == 0
    result = run(capsys, "clear-policy", "ctl-p", url=ours)
    assert (result.code, result.err) == (1, "amqp-broker ctl: policy 'ctl-p' in vhost '/' "
                                            "not found\n")


def test_ours_connections_channels_consumers(broker: Any, ours: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _served("res_connections", "res_channels", "res_consumers", "res_bindings",
            "res_exchanges")
    pika = pytest.importorskip("pika")
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "amq.topic", "ctl.#")
        channel.basic_consume(queue, lambda *args: None)
        for kind in ("connections", "channels", "consumers", "bindings", "exchanges"):
            result = run(capsys, "list", kind, url=ours)
            assert result.code == 0, result.err
            headers = [header for header, _ in ctl_verbs.LISTINGS[kind].columns]
            assert result.out.splitlines()[0].split() == headers
            assert len(result.out.splitlines()) >= 2, kind
        consumers = run(capsys, "--json", "list", "consumers", url=ours).json()
        assert queue in [consumer["queue"]["name"] for consumer in consumers]
        bindings = run(capsys, "list", "bindings", "-p", "/", "source", "routing_key",
                       url=ours).out
        assert "amq.topic  ctl.#" in bindings
        [name] = [c["name"] for c in run(capsys, "--json", "list", "connections",
                                         url=ours).json()]
        result = run(capsys, "close-connection", name, "--reason", "bye from ctl", url=ours)
        assert result.code == 0, result.err
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            for _ in range(500):
                connection.process_data_events(0.01)
        assert closed.value.reply_code == 320
        assert "bye from ctl" in closed.value.reply_text
        result = run(capsys, "close-connection", name, url=ours)
        assert (result.code, result.err) == (1, f"amqp-broker ctl: connection {name!r} "
                                                "not found\n")
    finally:
        if connection.is_open:
            connection.close()
