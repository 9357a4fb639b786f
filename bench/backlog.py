"""Backlogs far bigger than the memory watermark (issue "Performance II", targets 2 and 3).

Starts our broker with a memory watermark, publishes COUNT messages of SIZE bytes to one
queue with no consumer (with publisher confirms unless --no-confirm), samples the broker's
RSS all along, optionally restarts the broker (--restart: durable queue, persistent
messages), then drains the queue with one consumer and checks every message arrives once,
in publish order (each body starts with its sequence number). One JSON line on stdout.

  python bench/backlog.py --count 3000000 --size 1024 --watermark 300000000
  python bench/backlog.py --count 3000000 --size 1024 --watermark 300000000 --persistent --restart
  python bench/backlog.py --count 10000000 --size 16 --no-confirm --no-drain
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from conformance.childproc import stop_process  # noqa: E402

from amqp_mem import (  # noqa: E402
    MB,
    RawAmqp,
    RssSampler,
    _frame,
    _method,
    _shortstr,
    free_port,
    rss,
    wait_for_port,
)

QUEUE = "amqpbench.backlog"
_FRAME_HEAD = struct.Struct(">BHI")


class Broker:
    def __init__(self, watermark: str, data_dir: str, log: Path) -> None:
        self.watermark = watermark
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port",
               str(self.port), "--data-dir", self.data_dir, "--metrics-port", "0",
               "--management-port", "0", "--log-level", "warning",
               "--memory-high-watermark", str(self.watermark)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        if not wait_for_port("127.0.0.1", self.port, 120, self.proc):
            self.stop()
            raise RuntimeError(f"broker did not start; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def publish(port: int, count: int, size: int, persistent: bool, confirm: bool,
            window: int = 20000, batch: int = 1000) -> dict[str, float]:
    c = RawAmqp("127.0.0.1", port, timeout=300)
    ch = c.channel
    c.queue_declare(QUEUE, durable=persistent)
    if confirm:
        c.sock.sendall(_method(ch, 85, 10, b"\x00"))
        c.expect(85, 11)
    method = _method(ch, 60, 40, b"\x00\x00" + _shortstr("") + _shortstr(QUEUE) + b"\x00")
    header = _frame(2, ch, struct.pack(">HHQHB", 60, 0, size, 0x1000, 2 if persistent else 1))
    body_head = _FRAME_HEAD.pack(3, ch, size)
    pad = b"x" * (size - 8)
    confirmed = 0
    buf = bytearray()
    t0 = time.monotonic()
    sent = 0
    sock = c.sock
    while sent < count:
        n = min(batch, count - sent)
        parts = []
        for seq in range(sent, sent + n):
            parts += (method, header, body_head, seq.to_bytes(8, "big"), pad, b"\xce")
        sock.sendall(b"".join(parts))
        sent += n
        if confirm:
            confirmed = _read_acks(sock, buf, confirmed, sent - window if sent < count else sent)
    if not confirm:
        c.sync()
    secs = time.monotonic() - t0
    c.close()
    return {"publish_secs": round(secs, 1), "publish_rate": round(count / secs)}


def _read_acks(sock: socket.socket, buf: bytearray, confirmed: int, until: int) -> int:
    """Read basic.ack frames until the highest confirmed tag is at least until."""
    while confirmed < until:
        data = sock.recv(1 << 16)
        if not data:
            raise RuntimeError("connection closed while waiting for confirms")
        buf += data
        pos = 0
        while len(buf) - pos >= 7:
            ftype, _ch, size = _FRAME_HEAD.unpack_from(buf, pos)
            if len(buf) - pos < 8 + size:
                break
            if ftype == 1:
                cls, mth = struct.unpack_from(">HH", buf, pos + 7)
                if (cls, mth) == (60, 80):
                    (tag,) = struct.unpack_from(">Q", buf, pos + 11)
                    confirmed = max(confirmed, tag)
                elif (cls, mth) == (60, 120):
                    raise RuntimeError("publish nacked")
                elif cls in (10, 20) and mth in (40, 50):  # connection/channel.close
                    raise RuntimeError(f"closed by the broker: {bytes(buf[pos:pos + 8 + size])!r}")
            pos += 8 + size
        del buf[:pos]
    return confirmed


def drain(port: int, count: int, prefetch: int = 2000) -> dict[str, float]:
    c = RawAmqp("127.0.0.1", port, timeout=300)
    ch = c.channel
    sock = c.sock
    sock.sendall(_method(ch, 60, 10, struct.pack(">IHB", 0, prefetch, 0)))
    c.expect(60, 11)
    sock.sendall(_method(ch, 60, 20, b"\x00\x00" + _shortstr(QUEUE) + _shortstr("d")
                         + b"\x00" + b"\x00\x00\x00\x00"))
    c.expect(60, 21)
    buf = bytearray(c.buf) if hasattr(c, "buf") else bytearray()
    got = 0
    out_of_order = 0
    redelivered = 0
    tag = 0
    expect_body = False
    t0 = time.monotonic()
    while got < count:
        data = sock.recv(1 << 20)
        if not data:
            raise RuntimeError(f"connection closed after {got} messages")
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 7:
            ftype, _c, size = _FRAME_HEAD.unpack_from(buf, pos)
            if end - pos < 8 + size:
                break
            if ftype == 1:
                cls, mth = struct.unpack_from(">HH", buf, pos + 7)
                if (cls, mth) == (60, 60):
                    n = buf[pos + 11]
                    (tag,) = struct.unpack_from(">Q", buf, pos + 12 + n)
                    redelivered += buf[pos + 20 + n] & 1
                    expect_body = True
                elif cls in (10, 20) and mth in (40, 50):
                    raise RuntimeError("closed by the broker")
            elif ftype == 3 and expect_body:
                expect_body = False
                seq = int.from_bytes(buf[pos + 7:pos + 15], "big")
                if seq != got:
                    out_of_order += 1
                got += 1
                if got % 1000 == 0 or got == count:
                    sock.sendall(_method(ch, 60, 80, struct.pack(">QB", tag, 1)))
            pos += 8 + size
        del buf[:pos]
    secs = time.monotonic() - t0
    c.close()
    return {"drained": got, "out_of_order": out_of_order, "redelivered": redelivered,
            "drain_secs": round(secs, 1), "drain_rate": round(got / secs)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=3_000_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--watermark", default="300000000",
                   help="--memory-high-watermark: bytes, a size such as 2GB, or a fraction of RAM")
    p.add_argument("--persistent", action="store_true", help="durable queue, persistent messages")
    p.add_argument("--restart", action="store_true", help="restart the broker before draining")
    p.add_argument("--no-confirm", action="store_true")
    p.add_argument("--no-drain", action="store_true")
    p.add_argument("--rss-limit-mb", type=float, default=350.0)
    args = p.parse_args()
    if args.size < 8:
        p.error("--size must be at least 8 (the sequence number)")
    data_dir = tempfile.mkdtemp(prefix="amqp-bench-backlog-")
    log = REPO / "bench" / "out" / "broker-backlog.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    broker = Broker(args.watermark, data_dir, log)
    result: dict[str, object] = {"count": args.count, "size": args.size,
                                 "watermark": args.watermark, "persistent": args.persistent,
                                 "restart": args.restart}
    try:
        broker.start()
        assert broker.proc is not None
        time.sleep(1)
        idle = rss(broker.proc.pid)
        result["idle_rss_mb"] = round(idle / MB, 1)
        with RssSampler(broker.proc.pid, 0.2) as s:
            result |= publish(broker.port, args.count, args.size, args.persistent,
                              not args.no_confirm)
            depth = RawAmqp("127.0.0.1", broker.port).queue_declare(QUEUE, passive=True,
                                                                    durable=args.persistent)[0]
            result["queued"] = depth
            time.sleep(2)
            result["rss_after_publish_mb"] = round(rss(broker.proc.pid) / MB, 1)
        result["peak_rss_publish_mb"] = round(s.peak / MB, 1)
        result["bytes_per_queued_message"] = round(
            (rss(broker.proc.pid) - idle) / max(1, depth), 1)
        if args.restart:
            broker.stop()
            broker.start()
            assert broker.proc is not None
        if not args.no_drain:
            with RssSampler(broker.proc.pid, 0.2) as s:
                result |= drain(broker.port, args.count)
            result["peak_rss_drain_mb"] = round(s.peak / MB, 1)
        peak = max(v for k, v in result.items() if k.startswith("peak_rss"))  # type: ignore[type-var]
        result["ok"] = (depth == args.count and peak < args.rss_limit_mb  # type: ignore[operator]
                        and (args.no_drain or (result["drained"] == args.count
                                               and result["out_of_order"] == 0)))
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
