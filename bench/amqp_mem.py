"""Memory benchmarks for the broker (scenario 8), plus the helpers bench/run.py shares.

Scenarios (RSS is read from /proc/PID/status of the broker process):
  a  backlog:     1,000,000 transient 16-byte messages published to one queue, no consumer
  b  connections: 1,000 idle connections with one open channel each (RSS above idle broker)
  c  queues:      10,000 declared queues (RSS above idle broker)
  d  flood:       publishers without consumers for N seconds, RSS sampled every second

The publisher is a tiny raw AMQP 0-9-1 client written for benchmarking: a blocking socket,
the handshake, a few synchronous methods, and basic.publish frames pre-built once and sent
in large batches, so the client is never the bottleneck.

Usage:
  python bench/amqp_mem.py --target ours               # starts our broker on a free port
  python bench/amqp_mem.py --target rabbitmq           # reference RabbitMQ (port 5673)
  python bench/amqp_mem.py --target ours --scenarios a,d --flood-seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from conformance.childproc import stop_process  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
# Shared tools (reference-rabbitmq.sh, build-amqpload.sh) are in <shared>/tools: the checkout's
# sibling "shared", or AMQP_SHARED_DIR (the same variable conformance/runner.py and .ci/run use).
REFERENCE_SCRIPT = (
    Path(os.environ.get("AMQP_SHARED_DIR") or REPO.parent / "shared")
    / "tools"
    / "reference-rabbitmq.sh"
)
FRAME_END = b"\xce"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
MB = 1024 * 1024


# --------------------------------------------------------------------------- raw AMQP client


class AmqpError(Exception):
    """The broker closed the channel or the connection, or answered something unexpected."""


def _shortstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack("B", len(b)) + b


def _longstr(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _frame(ftype: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + FRAME_END


def _method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return _frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def publish_frames(
    channel: int, exchange: str, routing_key: str, body: bytes, delivery_mode: int = 1
) -> bytes:
    """basic.publish + content header (delivery-mode only) + one body frame, ready to send."""
    method = _method(
        channel, 60, 40, b"\x00\x00" + _shortstr(exchange) + _shortstr(routing_key) + b"\x00"
    )
    header = _frame(2, channel, struct.pack(">HHQHB", 60, 0, len(body), 0x1000, delivery_mode))
    return method + header + _frame(3, channel, body)


class _Reader:
    """Decodes AMQP field values (just enough for server-properties and method replies)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def shortstr(self) -> str:
        return self.take(self.unpack("B")).decode(errors="replace")

    def longstr(self) -> bytes:
        return self.take(self.unpack(">I"))

    def table(self) -> dict[str, Any]:
        end = self.pos + 4 + self.unpack(">I")
        out: dict[str, Any] = {}
        while self.pos < end:
            key = self.shortstr()
            out[key] = self.value()
        return out

    def value(self) -> Any:
        kind = self.take(1)
        fixed = {
            b"t": "?",
            b"b": "b",
            b"B": "B",
            b"s": ">h",
            b"u": ">H",
            b"I": ">i",
            b"i": ">I",
            b"l": ">q",
            b"L": ">Q",
            b"f": ">f",
            b"d": ">d",
            b"T": ">Q",
        }
        if kind in fixed:
            return self.unpack(fixed[kind])
        if kind == b"S":
            return self.longstr().decode(errors="replace")
        if kind == b"x":
            return self.longstr()
        if kind == b"F":
            return self.table()
        if kind == b"A":
            end = self.pos + 4 + self.unpack(">I")
            items = []
            while self.pos < end:
                items.append(self.value())
            return items
        if kind == b"D":
            scale, digits = self.unpack("B"), self.unpack(">i")
            return digits / (10**scale)
        if kind == b"V":
            return None
        raise AmqpError(f"unknown field type {kind!r}")


class RawAmqp:
    """A minimal blocking AMQP 0-9-1 client: handshake, channels, queue methods, bulk publish."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        timeout: float = 30.0,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.server_properties: dict[str, Any] = {}
        self.channel = 0
        self.channel_counter = 0
        self._handshake(user, password, vhost)
        self.open_channel()

    # ---- frames
    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise AmqpError("connection closed by broker")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self) -> tuple[int, int, bytes]:
        ftype, channel, size = struct.unpack(">BHI", self._recv_exact(7))
        payload = self._recv_exact(size)
        if self._recv_exact(1) != FRAME_END:
            raise AmqpError("bad frame end")
        return ftype, channel, payload

    def expect(self, class_id: int, method_id: int) -> _Reader:
        """Read frames until the given method arrives; broker-side closes raise AmqpError."""
        while True:
            ftype, channel, payload = self.read_frame()
            if ftype != 1:
                continue  # heartbeats, or content of something we did not ask for
            r = _Reader(payload)
            cid, mid = r.unpack(">H"), r.unpack(">H")
            if (cid, mid) == (class_id, method_id):
                return r
            if (cid, mid) == (10, 50):
                code, text = r.unpack(">H"), r.shortstr()
                self.sock.sendall(_method(0, 10, 51))
                raise AmqpError(f"connection closed by broker: {code} {text}")
            if (cid, mid) == (20, 40):
                code, text = r.unpack(">H"), r.shortstr()
                self.sock.sendall(_method(channel, 20, 41))
                if channel == self.channel:
                    self.channel = 0
                raise AmqpError(f"channel closed by broker: {code} {text}")
            # anything else (basic.ack for confirms, connection.blocked, ...) is ignored

    def _handshake(self, user: str, password: str, vhost: str) -> None:
        self.sock.sendall(PROTOCOL_HEADER)
        r = self.expect(10, 10)
        r.take(2)  # version major, minor
        self.server_properties = r.table()
        start_ok = (
            struct.pack(">I", 0)
            + _shortstr("PLAIN")
            + _longstr(b"\x00" + user.encode() + b"\x00" + password.encode())
            + _shortstr("en_US")
        )
        self.sock.sendall(_method(0, 10, 11, start_ok))
        r = self.expect(10, 30)
        channel_max, frame_max = r.unpack(">H"), r.unpack(">I")
        self.frame_max = frame_max or 131072
        self.sock.sendall(_method(0, 10, 31, struct.pack(">HIH", channel_max, self.frame_max, 0)))
        self.sock.sendall(_method(0, 10, 40, _shortstr(vhost) + _shortstr("") + b"\x00"))
        self.expect(10, 41)

    # ---- methods
    def open_channel(self) -> int:
        self.channel_counter += 1
        self.channel = self.channel_counter
        self.sock.sendall(_method(self.channel, 20, 10, _shortstr("")))
        self.expect(20, 11)
        return self.channel

    def _ensure_channel(self) -> int:
        return self.channel or self.open_channel()

    def queue_declare(
        self, name: str, durable: bool = False, passive: bool = False
    ) -> tuple[int, int]:
        """Returns (message_count, consumer_count)."""
        ch = self._ensure_channel()
        self.sock.sendall(self.queue_declare_frame(ch, name, durable, passive))
        r = self.expect(50, 11)
        r.shortstr()
        return r.unpack(">I"), r.unpack(">I")

    @staticmethod
    def queue_declare_frame(
        ch: int, name: str, durable: bool = False, passive: bool = False
    ) -> bytes:
        bits = (1 if passive else 0) | (2 if durable else 0)
        return _method(ch, 50, 10, b"\x00\x00" + _shortstr(name) + struct.pack(">BI", bits, 0))

    @staticmethod
    def queue_delete_frame(ch: int, name: str) -> bytes:
        return _method(ch, 50, 40, b"\x00\x00" + _shortstr(name) + b"\x00")

    def queue_delete(self, name: str) -> int:
        """Deletes a queue; a missing queue is not an error (returns -1 if the broker objects)."""
        ch = self._ensure_channel()
        self.sock.sendall(self.queue_delete_frame(ch, name))
        try:
            return self.expect(50, 41).unpack(">I")
        except AmqpError as e:
            if self.channel:  # the connection itself was closed: let that propagate
                raise
            if "404" not in str(e):
                print(f"  note: queue.delete {name}: {e}", file=sys.stderr)
            return -1

    def pipeline(self, frames: list[bytes], reply: tuple[int, int], batch: int = 500) -> None:
        """Sends many synchronous methods; replies are read a batch at a time, not per call."""
        for i in range(0, len(frames), batch):
            chunk = frames[i : i + batch]
            self.sock.sendall(b"".join(chunk))
            for _ in chunk:
                self.expect(*reply)

    def sync(self) -> None:
        """A round trip on the channel: everything sent before has been processed by the broker."""
        ch = self._ensure_channel()
        self.sock.sendall(_method(ch, 85, 10, b"\x00"))  # confirm.select
        self.expect(85, 11)

    def close(self) -> None:
        try:
            self.sock.sendall(
                _method(0, 10, 50, struct.pack(">H", 200) + _shortstr("bye") + b"\x00\x00\x00\x00")
            )
            self.sock.settimeout(5)
            self.expect(10, 51)
        except (OSError, AmqpError):
            pass
        finally:
            self.sock.close()


def amqp_answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """True if something on host:port completes an AMQP handshake with guest/guest."""
    try:
        c = RawAmqp(host, port, timeout=timeout)
    except (OSError, AmqpError, struct.error):
        return False
    c.close()
    return True


def delete_queues(host: str, port: int, names: list[str]) -> None:
    c = RawAmqp(host, port)
    try:
        for n in names:
            c.queue_delete(n)
    finally:
        c.close()


# --------------------------------------------------------------------------- processes and RSS


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes from /proc/PID/status ({} if the process is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def rss(pid: int) -> int:
    """VmRSS of pid plus its descendants (a broker may run helper processes), in bytes."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += read_status(p).get("VmRSS", 0)
        todo.extend(_children(p))
    return total


def pid_listening_on(port: int) -> int | None:
    """The pid owning the listening TCP socket on port (needs permission to read /proc/*/fd)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except OSError:
            continue
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                    return int(entry)
        except OSError:
            continue
    return None


class RssSampler:
    """Polls VmRSS of a pid in a thread; .peak is the largest value seen."""

    def __init__(self, pid: int | None, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            v = rss(self.pid) if self.pid else 0
            self.peak = max(self.peak, v)
            self.samples.append((time.monotonic() - t0, v))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def raise_fd_limit() -> None:
    """Idle-connection tests need >1000 descriptors in the client and in a broker we start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
        )


@dataclass
class OurBroker:
    """Our broker as a child process on a free port with a fresh temporary data dir."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path = OUT_DIR / "broker.log"
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    data_dir: str | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.port = self.port or free_port()
        self.data_dir = tempfile.mkdtemp(prefix="amqp-bench-data-")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "amqp_broker",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            self.data_dir,
            "--metrics-port",
            "0",
            "--management-port",
            "0",
            "--log-level",
            "warning",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.extra_env},
                start_new_session=True,
            )
        if not wait_for_port(self.host, self.port, timeout, self.proc):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"our broker did not start on port {self.port}; log tail:\n{tail}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def exit_note(self, lines: int = 5) -> str:
        rc = self.proc.returncode if self.proc else "?"
        return f"exited rc={rc}; log tail: {self.log_tail(lines)}"

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 5 s; returns the exit code."""
        rc = stop_process(self.proc)
        self.proc = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        return rc


class ReferenceRabbit:
    """The shared reference RabbitMQ: reused if it answers, else started here and stopped later."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.started_by_us = host, port, False
        self.note = ""

    def ensure(self, timeout: float = 180.0) -> bool:
        if amqp_answers(self.host, self.port):
            self.note = f"reused the reference RabbitMQ already running on port {self.port}"
            return True
        if not REFERENCE_SCRIPT.exists():
            self.note = f"{REFERENCE_SCRIPT} not found"
            return False
        try:
            r = subprocess.run(
                ["bash", str(REFERENCE_SCRIPT), "start", str(self.port)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.note = f"reference RabbitMQ start timed out after {timeout:.0f}s"
            return False
        if r.returncode != 0 or not amqp_answers(self.host, self.port, timeout=10):
            self.note = (
                "reference RabbitMQ could not be started (another instance with the same node name "
                f"may be running on another port): {(r.stderr or r.stdout).strip()[-300:]}"
            )
            return False
        self.started_by_us = True
        self.note = f"started the reference RabbitMQ on port {self.port}"
        return True

    @property
    def pid(self) -> int | None:
        return pid_listening_on(self.port)

    def stop(self) -> None:
        if self.started_by_us:
            try:
                subprocess.run(
                    ["bash", str(REFERENCE_SCRIPT), "stop"],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                print("warning: reference RabbitMQ stop timed out", file=sys.stderr)
            self.started_by_us = False


# --------------------------------------------------------------------------- memory scenarios

BACKLOG_QUEUE = "amqpbench.mem.backlog"
FLOOD_QUEUE = "amqpbench.mem.flood"


def settle(pid: int, seconds: float = 2.0) -> int:
    """Waits a little for the broker to finish background work, then returns its RSS."""
    time.sleep(seconds)
    return rss(pid)


def _send_until(sock: socket.socket, data: bytes, deadline: float | None) -> bool:
    """Sends all of data; False if the deadline passed while the broker was not reading."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                return False
    return True


def publish_bulk(
    host: str,
    port: int,
    queue: str,
    count: int,
    size: int = 16,
    batch: int = 2000,
    deadline: float | None = None,
) -> int:
    """Publishes count messages (or until deadline) to queue via the default exchange; returns sent.

    With a deadline, a broker that applies flow control (stops reading) does not hold us past it:
    the connection is then dropped mid-stream instead of closed cleanly."""
    c = RawAmqp(host, port, timeout=120)
    frames = publish_frames(c.channel, "", queue, b"x" * size) * batch
    sent = 0
    if deadline is not None:
        c.sock.settimeout(1)
    try:
        while sent < count and (deadline is None or time.monotonic() < deadline):
            n = min(batch, count - sent)
            if not _send_until(
                c.sock, frames if n == batch else frames[: len(frames) // batch * n], deadline
            ):
                c.sock.close()
                return sent
            sent += n
        c.sock.settimeout(120)
        c.sync()
    finally:
        c.close()
    return sent


def wait_queue_depth(
    host: str, port: int, queue: str, expected: int, timeout: float = 120.0
) -> int:
    """Polls the queue's message count until it reaches expected or stops changing."""
    c = RawAmqp(host, port)
    try:
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            depth = c.queue_declare(queue, passive=True)[0]
            if depth >= expected:
                return depth
            if depth != last:
                last, stable_since = depth, time.monotonic()
            elif time.monotonic() - stable_since > 5:
                return depth
            time.sleep(0.2)
        return last
    finally:
        c.close()


def scenario_backlog(host: str, port: int, pid: int, count: int) -> dict[str, Any]:
    delete_queues(host, port, [BACKLOG_QUEUE])
    idle = settle(pid, 1)
    c = RawAmqp(host, port)
    c.queue_declare(BACKLOG_QUEUE)
    c.close()
    t0 = time.monotonic()
    with RssSampler(pid, 0.2) as s:
        publish_bulk(host, port, BACKLOG_QUEUE, count)
        secs = time.monotonic() - t0
        depth = wait_queue_depth(host, port, BACKLOG_QUEUE, count)
        after = settle(pid, 2)
    delete_queues(host, port, [BACKLOG_QUEUE])
    return {
        "scenario": "a",
        "what": f"{count:,} transient 16 B messages queued, no consumer",
        "idle_mb": idle / MB,
        "rss_mb": after / MB,
        "above_idle_mb": (after - idle) / MB,
        "peak_mb": max(s.peak, after) / MB,
        "queued": depth,
        "publish_secs": round(secs, 2),
        "publish_rate": round(count / secs) if secs else None,
        "target": "<= 250 MB RSS",
        "ok": depth == count and after <= 250 * MB,
    }


def scenario_connections(host: str, port: int, pid: int, count: int) -> dict[str, Any]:
    raise_fd_limit()
    idle = settle(pid, 1)
    conns: list[RawAmqp] = []
    error = None
    t0 = time.monotonic()
    try:
        for _ in range(count):
            conns.append(RawAmqp(host, port, timeout=30))
    except (OSError, AmqpError) as e:
        error = f"after {len(conns)} connections: {e}"
    secs = time.monotonic() - t0
    after = settle(pid, 3)
    for c in conns:
        c.close()
    return {
        "scenario": "b",
        "what": f"{count:,} idle connections with one channel each",
        "opened": len(conns),
        "open_secs": round(secs, 2),
        "idle_mb": idle / MB,
        "rss_mb": after / MB,
        "above_idle_mb": (after - idle) / MB,
        "target": "<= 100 MB above idle",
        "ok": error is None and after - idle <= 100 * MB,
        "error": error,
    }


def scenario_queues(host: str, port: int, pid: int, count: int) -> dict[str, Any]:
    names = [f"amqpbench.mem.q.{i}" for i in range(count)]
    idle = settle(pid, 1)
    c = RawAmqp(host, port, timeout=120)
    error = None
    t0 = time.monotonic()
    try:
        c.pipeline([c.queue_declare_frame(c.channel, n) for n in names], (50, 11))
    except (OSError, AmqpError) as e:
        error = str(e)
    secs = time.monotonic() - t0
    after = settle(pid, 2)
    try:
        c.pipeline([c.queue_delete_frame(c._ensure_channel(), n) for n in names], (50, 41))
    except (OSError, AmqpError) as e:
        print(f"  note: deleting the bench queues failed: {e}", file=sys.stderr)
    c.close()
    return {
        "scenario": "c",
        "what": f"{count:,} declared queues",
        "declare_secs": round(secs, 2),
        "idle_mb": idle / MB,
        "rss_mb": after / MB,
        "above_idle_mb": (after - idle) / MB,
        "target": "<= 150 MB above idle",
        "ok": error is None and after - idle <= 150 * MB,
        "error": error,
    }


def scenario_flood(
    host: str, port: int, pid: int, seconds: float, publishers: int, size: int
) -> dict[str, Any]:
    delete_queues(host, port, [FLOOD_QUEUE])
    c = RawAmqp(host, port)
    c.queue_declare(FLOOD_QUEUE)
    c.close()
    idle = settle(pid, 1)
    deadline = time.monotonic() + seconds
    sent = [0] * publishers
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            sent[i] = publish_bulk(
                host, port, FLOOD_QUEUE, 10**12, size, batch=500, deadline=deadline
            )
        except (OSError, AmqpError) as e:
            errors.append(str(e))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(publishers)]
    series: list[tuple[int, float]] = []
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        series.append((round(time.monotonic() - t0), rss(pid) / MB))
        print(f"  flood t={series[-1][0]:>3}s rss={series[-1][1]:8.1f} MB", file=sys.stderr)
    for t in threads:
        t.join(timeout=120)
    depth = wait_queue_depth(host, port, FLOOD_QUEUE, sum(sent), timeout=60)
    final = rss(pid)
    delete_queues(host, port, [FLOOD_QUEUE])
    half = series[len(series) // 2 :] if len(series) >= 4 else series
    # growth over the second half of the run in MB/s: near 0 means RSS levels off (flow control)
    slope = (half[-1][1] - half[0][1]) / max(1, half[-1][0] - half[0][0]) if len(half) >= 2 else 0.0
    return {
        "scenario": "d",
        "what": f"{publishers} publishers, no consumer, {seconds:.0f}s, {size} B",
        "idle_mb": idle / MB,
        "final_mb": final / MB,
        "peak_mb": max(v for _, v in series) if series else 0,
        "sent": sum(sent),
        "queued": depth,
        "second_half_growth_mb_per_s": round(slope, 2),
        "series_mb": [round(v, 1) for _, v in series],
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--target", choices=["ours", "rabbitmq"], default="ours")
    ap.add_argument(
        "--port",
        type=int,
        help="ours: attach to a broker already on this port (default: start one); "
        "rabbitmq: its port (default 5673)",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--scenarios", default="a,b,c,d", help="comma list of a,b,c,d")
    ap.add_argument("--messages", type=int, default=1_000_000, help="scenario a")
    ap.add_argument("--connections", type=int, default=1000, help="scenario b")
    ap.add_argument("--queues", type=int, default=10_000, help="scenario c")
    ap.add_argument("--flood-seconds", type=float, default=30, help="scenario d")
    ap.add_argument("--flood-publishers", type=int, default=2)
    ap.add_argument("--flood-size", type=int, default=1024)
    ap.add_argument(
        "--memory-high-watermark",
        metavar="BYTES_OR_FRACTION",
        help="ours: passed to the broker we start as AMQP_BROKER_MEMORY_HIGH_WATERMARK, e.g. "
        "500000000 to see flow control in scenario d without filling the machine's RAM",
    )
    ap.add_argument(
        "--fresh",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ours: start a fresh broker for each scenario (default) so figures don't mix",
    )
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(wanted) - set("abcd"):
        ap.error(f"unknown scenarios {sorted(unknown)}")
    raise_fd_limit()

    results: list[dict[str, Any]] = []
    broker: OurBroker | None = None
    rabbit: ReferenceRabbit | None = None
    try:
        if args.target == "rabbitmq":
            rabbit = ReferenceRabbit(args.port or 5673, args.host)
            if not rabbit.ensure():
                print(f"error: {rabbit.note}", file=sys.stderr)
                return 2
            print(rabbit.note, file=sys.stderr)
        for sc in wanted:
            if (
                args.target == "ours"
                and args.port is None
                and (broker is None or args.fresh or not broker.alive())
            ):
                if broker:
                    broker.stop()
                env = (
                    {"AMQP_BROKER_MEMORY_HIGH_WATERMARK": args.memory_high_watermark}
                    if args.memory_high_watermark
                    else {}
                )
                broker = OurBroker(
                    host=args.host, log_path=OUT_DIR / "broker-mem.log", extra_env=env
                )
                broker.start()
            port = args.port or (broker.port if broker else 5673)
            pid = (broker.pid if broker else None) or pid_listening_on(port)
            if not pid:
                print(
                    f"error: no process listens on port {port} (root needed to read /proc/*/fd?)",
                    file=sys.stderr,
                )
                return 2
            runners: dict[str, Callable[[int, int], dict[str, Any]]] = {
                "a": lambda port, pid: scenario_backlog(args.host, port, pid, args.messages),
                "b": lambda port, pid: scenario_connections(args.host, port, pid, args.connections),
                "c": lambda port, pid: scenario_queues(args.host, port, pid, args.queues),
                "d": lambda port, pid: scenario_flood(
                    args.host, port, pid, args.flood_seconds, args.flood_publishers, args.flood_size
                ),
            }
            print(f"scenario {sc} on {args.target} (port {port}, pid {pid}) ...", file=sys.stderr)
            try:
                res = runners[sc](port, pid)
            except (OSError, AmqpError, struct.error) as e:
                res = {"scenario": sc, "error": f"{type(e).__name__}: {e}", "ok": False}
            if broker is not None and not broker.alive():
                res["error"] = f"{res.get('error') or ''} | broker {broker.exit_note()}"
                res["ok"] = False
            res["target_broker"] = args.target
            results.append(res)
            print(json.dumps(res), file=sys.stderr)
    finally:
        if broker:
            broker.stop()
        if rabbit:
            rabbit.stop()

    print(f"\nMemory ({args.target}):")
    print(
        f"{'':2} {'scenario':<48} {'idle MB':>8} {'RSS MB':>8} {'+idle MB':>9}  {'target':<22} ok"
    )
    for r in results:
        rss_mb = r.get("rss_mb", r.get("final_mb"))
        cells = [
            f"{r.get('idle_mb', 0):8.1f}",
            f"{rss_mb or 0:8.1f}",
            f"{r.get('above_idle_mb', (rss_mb or 0) - r.get('idle_mb', 0)):9.1f}",
        ]
        ok = r.get("ok")
        print(
            f"{r['scenario']:2} {r.get('what', r.get('error', ''))[:48]:<48} {' '.join(cells)}  "
            f"{r.get('target', ''):<22} {'' if ok is None else ('yes' if ok else 'NO')}"
        )
        if r["scenario"] == "d" and "series_mb" in r:
            print(f"   RSS MB each second: {r['series_mb']}")
            print(
                f"   growth over the second half: {r['second_half_growth_mb_per_s']} MB/s; "
                f"sent {r['sent']:,}, queued {r['queued']:,}"
            )
        if r.get("error"):
            print(f"   error: {r['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r.get("ok", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
