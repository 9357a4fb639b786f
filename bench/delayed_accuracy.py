"""How punctually an x-delayed-message exchange delivers (issue 16): not a test, never
gates CI.

Starts the broker as a subprocess (fresh data directory), declares a delayed exchange
(x-delayed-type direct) bound to one queue, and publishes --count messages (persistent
by default) with x-delay drawn uniformly from 0 to --max-delay ms, while one consumer
(another connection) takes them. A message's lateness is its arrival time minus
(its publish time + its x-delay), both read on this machine's clock; x-delay 0 is not
delayed at all (the plugin's rule), so those measure plain delivery. Prints one JSON
line: count, received, early (arrived before their due time: must be 0), lateness
p50/p99/max in ms, the same for the messages due after publishing ended (while a
burst of publishes is read, the event loop is busy with it: timers run late), and the
publish rate.

    python bench/delayed_accuracy.py [--count 10000] [--max-delay 5000] [--transient]
                                     [--rate MSGS_PER_S]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("broker did not start")


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def params_of(port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(host="127.0.0.1", port=port,
                                     credentials=pika.PlainCredentials("guest", "guest"))


class _Ready:
    """Waits until the consumer's consumer is registered (the queue shows it)."""

    @staticmethod
    def wait(port: int) -> None:
        conn = pika.BlockingConnection(params_of(port))
        ch = conn.channel()
        deadline = time.monotonic() + 30
        while (ch.queue_declare("bench-delayed-q", durable=True).method.consumer_count == 0
               and time.monotonic() < deadline):
            time.sleep(0.05)
        conn.close()


ready = _Ready()


def consume(port: int, count: int, max_delay: int,
            results: multiprocessing.Queue[list[list[float]]]) -> None:
    """Runs in a process of its own: lateness (ms) of each message received."""
    lateness: list[float] = []
    due_after: list[float] = []  # due time (epoch s) of each
    conn = pika.BlockingConnection(params_of(port))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1000)
    for method, props, _body in ch.consume("bench-delayed-q", auto_ack=True,
                                           inactivity_timeout=max_delay / 1000 + 10):
        if method is None:
            break
        now = time.time()
        sent, delay = float(props.headers["sent"]), int(props.headers["delay"])
        lateness.append((now - sent - delay / 1000) * 1000)
        due_after.append(sent + delay / 1000)
        if len(lateness) == count:
            break
    conn.close()
    results.put([lateness, due_after])


def run(count: int, max_delay: int, persistent: bool, port: int,
        rate: float) -> dict[str, object]:
    params = params_of(port)
    setup = pika.BlockingConnection(params)
    ch = setup.channel()
    ch.exchange_declare("bench-delayed", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "direct"})
    ch.queue_declare("bench-delayed-q", durable=True)
    ch.queue_bind("bench-delayed-q", "bench-delayed", "k")
    setup.close()

    # the consumer is another process, so that publishing does not hold it up (GIL)
    results: multiprocessing.Queue[list[list[float]]] = multiprocessing.Queue()
    consumer = multiprocessing.Process(target=consume, args=(port, count, max_delay, results))
    consumer.start()
    ready.wait(port)
    pub = pika.BlockingConnection(params)
    pch = pub.channel()
    rng = random.Random(16)
    started = time.monotonic()
    for i in range(count):
        if rate:
            ahead = started + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        delay = rng.randint(0, max_delay)
        pch.basic_publish("bench-delayed", "k", b"x" * 64, pika.BasicProperties(
            delivery_mode=2 if persistent else 1,
            headers={"x-delay": delay, "delay": delay, "sent": repr(time.time()), "n": i}))
    publish_s = time.monotonic() - started
    published_at = time.time()
    pub.close()
    lateness, dues = results.get()
    consumer.join()
    early = sum(1 for late in lateness if late < 0)
    ordered = sorted(lateness)
    # messages due once publishing was over: what the timer does on a loop that is not
    # busy reading a burst of publishes
    quiet = sorted(late for late, due in zip(lateness, dues, strict=True)
                   if due > published_at + 0.05)
    return {"bench": "delayed_accuracy", "count": count, "max_delay_ms": max_delay,
            "persistent": persistent, "rate_limit": rate or None, "received": len(ordered),
            "early": early,
            "lateness_p50_ms": round(percentile(ordered, 0.5), 2) if ordered else None,
            "lateness_p99_ms": round(percentile(ordered, 0.99), 2) if ordered else None,
            "lateness_max_ms": round(ordered[-1], 2) if ordered else None,
            "due_after_publishing": len(quiet),
            "after_publishing_p50_ms": round(percentile(quiet, 0.5), 2) if quiet else None,
            "after_publishing_p99_ms": round(percentile(quiet, 0.99), 2) if quiet else None,
            "publish_msgs_per_s": round(count / publish_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--max-delay", type=int, default=5000, help="ms")
    parser.add_argument("--transient", action="store_true", help="delivery-mode 1")
    parser.add_argument("--rate", type=float, default=0,
                        help="publish at most this many messages a second (0: at once)")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="delayed-bench-")
    port = free_port()
    log = open(os.path.join(data, "broker.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1",
                             "--port", str(port), "--data-dir", os.path.join(data, "d"),
                             "--log-level", "warning", "--management-port", "0",
                             "--metrics-port", "0"], cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_port(port, proc)
        print(json.dumps(run(args.count, args.max_delay, not args.transient, port,
                             args.rate)))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
