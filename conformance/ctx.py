"""Per-scenario context: connection helpers, unique names, event log and cleanup."""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import re
import subprocess
import time
import uuid
from typing import Any

import pika
import pika.exceptions as pex

from .childproc import stop_process


def jsonable(value: Any) -> Any:
    """Convert what a client library decoded into JSON data, keeping the Python type visible
    wherever JSON would otherwise lose it."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, bytes):
        try:
            return {"bytes": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"bytes_b64": base64.b64encode(value).decode()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return {"repr": repr(value)}


def typed(value: Any) -> Any:
    """Like ``jsonable`` but also tags every scalar with its Python type name."""
    if isinstance(value, dict):
        return {str(k): typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    return [type(value).__name__, jsonable(value)]


_FLAT = re.compile(r"^(\w+): \((\d+)\) '(.*)'$", re.S)


def describe_exc(exc: BaseException) -> dict:
    """The observable part of an exception raised by a client library."""
    out: dict[str, Any] = {"error": type(exc).__name__}
    inner = exc
    # pika wraps handshake failures: AMQPConnectionError(ConnectionClosedByBroker(...))
    if (isinstance(exc, pex.AMQPConnectionError) and exc.args
            and isinstance(exc.args[0], BaseException)):
        inner = exc.args[0]
        out["cause"] = type(inner).__name__
    code = getattr(inner, "reply_code", None)
    text = getattr(inner, "reply_text", None)
    if code is None and isinstance(inner, (pex.AMQPChannelError, pex.AMQPConnectionError)):
        if len(inner.args) >= 2 and isinstance(inner.args[0], int):
            code, text = inner.args[0], inner.args[1]
    if code is None and inner.args and isinstance(inner.args[0], str):
        # pika flattens handshake failures into a string: "ConnectionClosedByBroker: (403) 'TEXT'"
        m = _FLAT.match(inner.args[0])
        if m:
            out["cause"], code, text = m.group(1), int(m.group(2)), m.group(3)
        else:
            out["detail"] = inner.args[0].split(":", 1)[0]
    if code is not None:
        out["reply_code"] = code
        out["reply_text"] = text
    return out


PIKA_ERRORS = (pex.AMQPError,)

# AMQP port -> management HTTP port of each broker under test; the runner fills it in before
# it forks the scenario children (RabbitMQ's is its AMQP port + 10000: 5673 -> 15673)
MANAGEMENT_PORTS: dict[int, int] = {}


def shape(value: Any) -> Any:
    """The structure of a JSON value without its data: objects keep their keys (sorted),
    lists the shape of their first item, scalars become their JSON type name. Management
    API scenarios log shapes where values differ between brokers (versions, node names)."""
    if isinstance(value, dict):
        return {k: shape(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "string"


class Ctx:
    """What a scenario gets. ``log`` records an observation; ``name`` makes run-unique names."""

    def __init__(self, host: str, port: int, scenario: str, user: str = "guest",
                 password: str = "guest", vhost: str = "/"):
        self.host, self.port, self.scenario = host, port, scenario
        self.user, self.password, self.vhost = user, password, vhost
        self.token = uuid.uuid4().hex[:10]
        self.events: list = []
        self._connections: list = []
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._cleanups: list = []

    # --- observations -------------------------------------------------------------------------
    def log(self, event: str, **fields: Any) -> None:
        rec = {"ev": event}
        rec.update({k: jsonable(v) for k, v in fields.items()})
        self.events.append(rec)

    @contextlib.contextmanager
    def expect(self, label: str, **fields: Any):
        """Run a block that may fail with a protocol error; log the outcome either way."""
        try:
            yield
        except PIKA_ERRORS as exc:
            self.log(label, **fields, **describe_exc(exc))
        else:
            self.log(label, **fields, outcome="ok")

    # --- the management HTTP API ---------------------------------------------------------------
    @property
    def management_port(self) -> int:
        return MANAGEMENT_PORTS.get(self.port, self.port + 10000)

    def api(self, method: str, path: str, body: Any = None, *, user: str | None = None,
            password: str | None = None, raw: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, Any]:
        """One management API request (path from "/api/..."): (status, parsed JSON body, or
        the text when it is not JSON, or None when empty). HTTP errors are returned, not
        raised; auth is this context's user unless given (user="" sends none)."""
        import json
        import urllib.error
        import urllib.request
        url = f"http://{self.host}:{self.management_port}{path}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("content-type", content_type)
        login = self.user if user is None else user
        if login:
            secret = self.password if password is None else password
            token = base64.b64encode(f"{login}:{secret}".encode()).decode()
            req.add_header("authorization", f"Basic {token}")
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None  # a 3xx is the answer to observe, not to follow

        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=10) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if not payload:
            return status, None
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    # --- names --------------------------------------------------------------------------------
    def name(self, logical: str) -> str:
        return f"cf.{self.token}.{logical}"

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/%2F"

    # --- pika helpers -------------------------------------------------------------------------
    def params(self, **kw: Any) -> pika.ConnectionParameters:
        kw.setdefault("credentials", pika.PlainCredentials(self.user, self.password))
        kw.setdefault("virtual_host", self.vhost)
        kw.setdefault("connection_attempts", 1)
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("blocked_connection_timeout", 15)
        return pika.ConnectionParameters(host=self.host, port=self.port, **kw)

    def connect(self, **kw: Any) -> pika.BlockingConnection:
        conn = pika.BlockingConnection(self.params(**kw))
        self._connections.append(conn)
        return conn

    def channel(self, conn: pika.BlockingConnection | None = None):
        return (conn or self.connect()).channel()

    def queue(self, ch, logical: str, **kw: Any) -> str:
        """Declare a run-unique queue, remember it for cleanup, return its name."""
        name = self.name(logical) if logical else ""
        ok = ch.queue_declare(name, **kw)
        self._queues.append(ok.method.queue)
        return ok.method.queue

    def exchange(self, ch, logical: str, kind: str = "direct", **kw: Any) -> str:
        name = self.name(logical)
        ch.exchange_declare(name, kind, **kw)
        self._exchanges.append(name)
        return name

    def track_queue(self, name: str) -> None:
        self._queues.append(name)

    def track_exchange(self, name: str) -> None:
        self._exchanges.append(name)

    def on_cleanup(self, fn) -> None:
        self._cleanups.append(fn)

    # --- subprocesses -------------------------------------------------------------------------
    def popen(self, args, **kw: Any) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(args, **kw)
        self._procs.append(proc)
        return proc

    @staticmethod
    def stop_proc(proc: subprocess.Popen, grace: float = 5.0) -> None:
        stop_process(proc, grace, group=True)

    # --- teardown -----------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        problems: list[str] = []
        for proc in self._procs:
            try:
                self.stop_proc(proc)
            except Exception as exc:  # pragma: no cover
                problems.append(f"stop pid {proc.pid}: {exc!r}")
        for fn in self._cleanups:
            try:
                fn()
            except Exception as exc:
                problems.append(f"cleanup {fn}: {exc!r}")
        for conn in self._connections:
            with contextlib.suppress(Exception):
                if conn.is_open:
                    conn.close()
        if self._queues or self._exchanges:
            try:
                conn = None
                for attempt in range(3):  # the broker may be busy right after a heavy scenario
                    try:
                        conn = pika.BlockingConnection(self.params(socket_timeout=10,
                                                                   stack_timeout=30))
                        break
                    except pex.AMQPConnectionError:
                        if attempt == 2:
                            raise
                        time.sleep(1)
                for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
                    for n in dict.fromkeys(names):
                        ch = conn.channel()
                        try:
                            if kind == "queue":
                                ch.queue_delete(n)
                            else:
                                ch.exchange_delete(n)
                            ch.close()
                        except pex.ChannelClosedByBroker:
                            pass  # already gone
                conn.close()
            except Exception as exc:
                problems.append(f"delete queues/exchanges: {exc!r}")
        return problems


def wait_until(pred, timeout: float = 5.0, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def pump(conn, seconds: float) -> None:
    """Process I/O and dispatch callbacks on a pika BlockingConnection for ``seconds``.

    (``process_data_events(time_limit=...)`` returns as soon as anything was dispatched.)"""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        conn.process_data_events(time_limit=left)
