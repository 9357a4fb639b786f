"""Helpers for the integration tests: the broker as a subprocess, and a raw
socket AMQP client (pamqp frames) for what real clients will not send.

Every wait here is bounded; nothing blocks forever on a broker that misbehaves.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from pamqp import commands, frame, header, heartbeat
from pamqp.body import ContentBody
from pamqp.exceptions import UnmarshalingException

from conformance.childproc import stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- the broker as a subprocess ---------------------------------------------------

@dataclass
class BrokerProcess:
    """One broker subprocess; `start()` waits for its port, `stop()` ends it by PID."""

    data_dir: Path | None
    log_path: Path
    port: int = 0
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    # the management API's port: 0 (the default) keeps it off, so test brokers never
    # compete for 15672; a test that wants it passes a free_port()
    management_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def start(self) -> BrokerProcess:
        if not self.port:
            self.port = free_port()
        args = [sys.executable, "-m", "amqp_broker", "--host", self.host,
                "--port", str(self.port),
                "--data-dir", str(self.data_dir) if self.data_dir else "none",
                "--log-level", "warning", "--metrics-port", "0", "--disk-free-limit", "1000000",
                *self.extra_args]
        if "--management-port" not in self.extra_args:
            args += ["--management-port", str(self.management_port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode} during "
                                   f"startup; log:\n{self.log()}")
            if port_open(self.port, self.host) and (
                    not self.management_port or port_open(self.management_port, self.host)):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"broker did not listen on {self.port} within {START_TIMEOUT}s; "
                           f"log:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL: by PID only. Returns the exit code."""
        return stop_process(self.proc, STOP_TIMEOUT)

    def restart(self) -> BrokerProcess:
        self.stop()
        self.proc = None
        return self.start()


# --- pika ------------------------------------------------------------------------------

def pika_params(port: int, **kwargs: Any) -> pika.ConnectionParameters:
    kwargs.setdefault("credentials", pika.PlainCredentials("guest", "guest"))
    kwargs.setdefault("blocked_connection_timeout", 10)
    kwargs.setdefault("socket_timeout", 5)
    kwargs.setdefault("stack_timeout", 10)
    kwargs.setdefault("connection_attempts", 1)
    return pika.ConnectionParameters(host="127.0.0.1", port=port, **kwargs)


def pika_connect(port: int, **kwargs: Any) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika_params(port, **kwargs))


def consume_n(ch: Any, queue: str, n: int, timeout: float = 5.0,
              auto_ack: bool = False) -> list[tuple[Any, Any, bytes]]:
    """Consume exactly up to n messages within timeout; returns (method, props, body)."""
    got: list[tuple[Any, Any, bytes]] = []
    for method, props, body in ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=timeout):
        if method is None:
            break
        got.append((method, props, body))
        if len(got) >= n:
            break
    ch.cancel()
    return got


def drain(conn: pika.BlockingConnection, seconds: float) -> None:
    """Let pika process events for a bounded time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=max(0.0, min(0.1, deadline - time.monotonic())))


# --- raw socket AMQP ---------------------------------------------------------------

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class Closed(Exception):
    """The broker closed the socket."""


class RawClient:
    """A minimal AMQP 0-9-1 client over a plain socket.

    It speaks just enough (handshake, channel open, publish) to put the broker
    in a chosen state and then send what a well-behaved client never would.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.frame_max = 131072
        self.heartbeat = 0
        self.tune: commands.Connection.Tune | None = None
        self.close_frame: commands.Connection.Close | None = None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- bytes -------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, value: Any, channel: int = 0) -> None:
        self.sock.sendall(frame.marshal(value, channel))

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no data from broker") from None
        except ConnectionResetError:
            raise Closed("connection reset") from None
        if not data:
            raise Closed("broker closed the socket")
        self.buf += data

    def read_bytes(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, timeout: float | None = None) -> tuple[int, Any]:
        """(channel, frame value) of the next frame."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self.buf) >= 7:
                size = int.from_bytes(self.buf[3:7], "big")
                if len(self.buf) >= size + 8:
                    try:
                        consumed, channel, value = frame.unmarshal(self.buf)
                    except UnmarshalingException as exc:
                        raise AssertionError(f"broker sent an undecodable frame: {exc}") from exc
                    self.buf = self.buf[consumed:]
                    return channel, value
            self._fill(deadline)

    def read_until(self, kinds: tuple[type, ...], timeout: float | None = None,
                   skip_heartbeats: bool = True) -> tuple[int, Any]:
        """Next frame of one of `kinds`, skipping heartbeats (and nothing else)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            channel, value = self.read_frame(max(0.01, deadline - time.monotonic()))
            if isinstance(value, kinds):
                return channel, value
            if skip_heartbeats and isinstance(value, heartbeat.Heartbeat):
                continue
            raise AssertionError(f"expected {kinds}, got {value!r} on channel {channel}")

    def expect_connection_close(self, timeout: float | None = None) -> commands.Connection.Close:
        _, value = self.read_until((commands.Connection.Close,), timeout)
        try:
            self.send(commands.Connection.CloseOk())
        except OSError:
            pass
        return value

    def wait_closed(self, timeout: float) -> bool:
        """True once the broker closed the socket within timeout.

        Frames read meanwhile are dropped, except that a connection.close is
        remembered in `close_frame` and answered with close-ok, as a client would."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._answer_close()
            try:
                self._fill(deadline)
            except Closed:
                return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def _answer_close(self) -> None:
        while len(self.buf) >= 8:
            size = int.from_bytes(self.buf[3:7], "big")
            if len(self.buf) < size + 8:
                return
            try:
                consumed, _, value = frame.unmarshal(self.buf)
            except Exception:
                self.buf = b""
                return
            self.buf = self.buf[consumed:]
            if isinstance(value, commands.Connection.Close):
                self.close_frame = value
                try:
                    self.send(commands.Connection.CloseOk())
                except OSError:
                    pass

    # --- handshake ------------------------------------------------------------
    def handshake(self, heartbeat_interval: int | None = None, frame_max: int | None = None,
                  vhost: str = "/", user: str = "guest", password: str = "guest") -> None:
        self.send_raw(PROTOCOL_HEADER)
        _, start = self.read_until((commands.Connection.Start,))
        self.send(commands.Connection.StartOk(
            client_properties={"product": "raw-test", "capabilities": {
                "authentication_failure_close": True, "consumer_cancel_notify": True,
                "publisher_confirms": True, "basic.nack": True}},
            mechanism="PLAIN", response=f"\x00{user}\x00{password}", locale="en_US"))
        _, tune = self.read_until((commands.Connection.Tune,))
        self.tune = tune
        self.frame_max = frame_max if frame_max is not None else tune.frame_max
        self.heartbeat = heartbeat_interval if heartbeat_interval is not None else 0
        self.send(commands.Connection.TuneOk(channel_max=tune.channel_max,
                                             frame_max=self.frame_max,
                                             heartbeat=self.heartbeat))
        self.send(commands.Connection.Open(virtual_host=vhost))
        self.read_until((commands.Connection.OpenOk,))

    def open_channel(self, channel: int = 1) -> None:
        self.send(commands.Channel.Open(), channel)
        self.read_until((commands.Channel.OpenOk,))

    def publish(self, channel: int, exchange: str, routing_key: str, body: bytes,
                mandatory: bool = False, immediate: bool = False,
                properties: commands.Basic.Properties | None = None) -> None:
        data = frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                    mandatory=mandatory, immediate=immediate),
                             channel)
        data += frame.marshal(header.ContentHeader(0, len(body),
                                                   properties or commands.Basic.Properties()),
                              channel)
        if body:
            data += frame.marshal(ContentBody(body), channel)
        self.send_raw(data)


def method_payload(method: Any) -> bytes:
    """A method frame's payload: class and method id, then the arguments."""
    return int(method.index).to_bytes(4, "big") + method.marshal()


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return (frame_type.to_bytes(1, "big") + channel.to_bytes(2, "big")
            + len(payload).to_bytes(4, "big") + payload + end)


def temporary_names(ch: Any, prefix: str, uid: str) -> Iterator[Callable[[str], str]]:
    """For a fixture: yields name(label) -> "PREFIX-LABEL-UID", then deletes the queue
    and the exchange of every name it gave (while the channel is still open)."""
    made: list[str] = []

    def name(label: str) -> str:
        made.append(f"{prefix}-{label}-{uid}")
        return made[-1]

    yield name
    if ch.is_open:
        for n in made:
            ch.queue_delete(n)
            ch.exchange_delete(n)
