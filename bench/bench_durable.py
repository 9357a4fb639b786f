"""Durable storage bench: a 1M persistent-message backlog, RSS, recovery, drain rate.

    python bench/bench_durable.py [--count 1000000] [--size 1024] [--confirm 2000]

Steps (one broker data dir, fresh in a temp dir unless --data-dir is given):

1. start the broker; declare a durable queue; publish COUNT persistent SIZE-byte
   messages with no consumer (bench/out/amqpload --consumers 0, with publisher
   confirms so the publisher is paced by the group commit); report publish rate,
   broker RSS (VmRSS) and data dir size;
2. stop it with SIGTERM and start it again on the same data dir: report the
   recovery seconds from the broker's "recovered" log line, the wall-clock
   seconds until the port answers, and RSS after recovery;
3. drain the whole backlog with a pika consumer (prefetch 2000, multiple acks)
   and report the drain rate and RSS; then wait for the data dir to shrink.

Prints figures; asserts nothing. The broker is stopped by PID in a finally
block. Targets from the "Durable storage" issue: RSS < 300 MB with the 1M
backlog, recovery < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from conformance.childproc import stop_process  # noqa: E402

AMQPLOAD = REPO / "bench" / "out" / "amqpload"
QUEUE = "benchdurable-d"  # amqpload --durable --queue benchdurable routes to "<queue>-d"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def dir_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total / 1e6


class Broker:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0

    def start(self, timeout: float = 600.0) -> float:
        """Start; returns the wall-clock seconds until the port answered."""
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--log-level", "info", "--log-format", "json",
             "--metrics-port", "0", "--management-port", "0"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            if port_open(self.port):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise RuntimeError("broker did not start in time")

    def recovered(self) -> dict:
        """The last "recovered" log line written since the last start."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode(errors="replace")
        found: dict = {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "recovered":
                found = rec
        return found

    def stop(self, timeout: float = 120.0) -> int | None:
        proc, self.proc = self.proc, None
        return stop_process(proc, timeout)


def connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=port, credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0, blocked_connection_timeout=600, socket_timeout=30, stack_timeout=60))


def queue_depth(port: int) -> int:
    conn = connect(port)
    try:
        ok = conn.channel().queue_declare(QUEUE, durable=True, passive=True)
        return int(ok.method.message_count)
    finally:
        conn.close()


def sample_rss(pid: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        stop.wait(0.2)


def publish(broker: Broker, count: int, size: int, confirm: int) -> tuple[float, float]:
    """Returns (seconds, peak RSS MB during publishing)."""
    conn = connect(broker.port)
    try:
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        ch.queue_purge(QUEUE)
    finally:
        conn.close()
    args = [str(AMQPLOAD), "--port", str(broker.port), "--count", str(count), "--size", str(size),
            "--persistent", "--durable", "--queue", QUEUE[:-2],
            "--consumers", "0", "--producers", "1"]
    if confirm:
        args += ["--confirm", str(confirm)]
    samples: list[float] = []
    stop = threading.Event()
    assert broker.proc is not None
    sampler = threading.Thread(target=sample_rss, args=(broker.proc.pid, stop, samples),
                               daemon=True)
    sampler.start()
    t0 = time.monotonic()
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=1800,
                             start_new_session=True)
    finally:
        stop.set()
        sampler.join()
    secs = time.monotonic() - t0
    if res.returncode != 0:
        print(f"amqpload failed ({res.returncode}): {res.stderr.strip()}")
    return secs, max(samples, default=float("nan"))


def drain(broker: Broker, count: int) -> tuple[int, float, float]:
    """Consume and ack everything; returns (messages, seconds, peak RSS MB)."""
    samples: list[float] = []
    stop = threading.Event()
    assert broker.proc is not None
    sampler = threading.Thread(target=sample_rss, args=(broker.proc.pid, stop, samples),
                               daemon=True)
    sampler.start()
    conn = connect(broker.port)
    got = 0
    t0 = time.monotonic()
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=2000)
        last_tag = acked = 0
        for method, _props, _body in ch.consume(QUEUE, inactivity_timeout=10):
            if method is None:
                break
            got += 1
            last_tag = method.delivery_tag
            if got % 500 == 0:
                ch.basic_ack(last_tag, multiple=True)
                acked = last_tag
            if got >= count:
                break
        if last_tag > acked:
            ch.basic_ack(last_tag, multiple=True)
        ch.cancel()
        secs = time.monotonic() - t0
        conn.close()
    finally:
        stop.set()
        sampler.join()
    return got, secs, max(samples, default=float("nan"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--confirm", type=int, default=2000, help="confirm window (0: no confirms)")
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    if not AMQPLOAD.exists():
        print(f"{AMQPLOAD} is missing; build it with ../shared/tools/build-amqpload.sh")
        return 2
    tmp = tempfile.TemporaryDirectory(prefix="bench-durable-")
    data_dir = args.data_dir or Path(tmp.name) / "data"
    log_path = REPO / "bench" / "out" / "broker-durable.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    broker = Broker(data_dir, log_path)
    fig: dict[str, object] = {"count": args.count, "size": args.size}
    try:
        broker.start()
        assert broker.proc is not None
        print(f"broker pid {broker.proc.pid} port {broker.port} data {data_dir}", flush=True)
        secs, peak = publish(broker, args.count, args.size, args.confirm)
        depth = queue_depth(broker.port)
        fig.update(publish_secs=round(secs, 1), publish_rate=round(args.count / secs),
                   publish_peak_rss_mb=round(peak, 1), backlog=depth,
                   rss_mb_with_backlog=round(rss_mb(broker.proc.pid), 1),
                   data_dir_mb=round(dir_mb(data_dir), 1))
        print(f"publish: {args.count} x {args.size} B in {secs:.1f}s = "
              f"{args.count / secs:.0f} msg/s;"
              f" queue depth {depth}; RSS now {fig['rss_mb_with_backlog']} MB"
              f" (peak while publishing {peak:.1f} MB); data dir {fig['data_dir_mb']} MB",
              flush=True)

        t0 = time.monotonic()
        code = broker.stop()
        stop_secs = time.monotonic() - t0
        up = broker.start()
        rec = broker.recovered()
        time.sleep(1.0)
        assert broker.proc is not None
        depth2 = queue_depth(broker.port)
        fig.update(stop_secs=round(stop_secs, 1), stop_exit_code=code,
                   recovery_secs_logged=rec.get("seconds"), recovered_messages=rec.get("messages"),
                   startup_wall_secs=round(up, 1), backlog_after_restart=depth2,
                   rss_mb_after_recovery=round(rss_mb(broker.proc.pid), 1))
        print(f"restart: SIGTERM stop took {stop_secs:.1f}s (exit {code}); recovered line: "
              f"{ {k: rec.get(k) for k in ('queues', 'messages', 'skipped_records', 'seconds')} };"
              f" port answered after {up:.1f}s; queue depth {depth2};"
              f" RSS after recovery {fig['rss_mb_after_recovery']} MB", flush=True)

        got, secs, peak = drain(broker, depth2)
        fig.update(drained=got, drain_secs=round(secs, 1),
                   drain_rate=round(got / secs) if secs else None,
                   drain_peak_rss_mb=round(peak, 1))
        print(f"drain: {got} messages in {secs:.1f}s = {got / secs if secs else 0:.0f} msg/s "
              f"(pika consumer, prefetch 2000, ack every 500); peak RSS {peak:.1f} MB", flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and dir_mb(data_dir) > 10:
            time.sleep(0.5)
        fig["data_dir_mb_after_drain"] = round(dir_mb(data_dir), 1)
        fig["rss_mb_after_drain"] = round(rss_mb(broker.proc.pid), 1)
        print(f"after drain: data dir {fig['data_dir_mb_after_drain']} MB, "
              f"RSS {fig['rss_mb_after_drain']} MB", flush=True)
    finally:
        broker.stop()
        tmp.cleanup()
    print("targets: RSS < 300 MB with 1M backlog -> "
          f"{fig.get('rss_mb_with_backlog')} MB "
          f"(after recovery {fig.get('rss_mb_after_recovery')} MB);"
          f" recovery < 10 s -> {fig.get('recovery_secs_logged')} s")
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
