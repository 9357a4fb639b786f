"""How fast the broker is ready inside a test suite (issue 14): not a test, never gates CI.

Measures, each repeated --runs times (median, 90th percentile, min, in ms):

- start: running_broker() entered until it returns (listening on its port);
- first connection: from the start until a first client is accepted, as a raw TCP
  connect and as an open pika connection (AMQP handshake done);
- stop: leaving the block (the server, its thread and loop ended);
- round trip on the shared broker (what a test using the session `amqp_broker`
  fixture pays): pika connect, queue.declare, basic.publish, basic.get, close;
  and publish + get alone on an open channel;
- a fresh broker per test (`amqp_broker_fresh`): start, connect, publish, get,
  close, stop;
- the import of amqp_broker.testing, paid once per test run;
- for comparison, the broker as a subprocess (`python -m amqp_broker`) until it
  accepts a TCP connection.

    python bench/startup.py [--runs 50] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import pika

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from amqp_broker.testing import running_broker  # noqa: E402


def ms(seconds: float) -> float:
    return seconds * 1000.0


def summary(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return statistics.median(ordered), p90, ordered[0]


def tcp_accepted(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=5).close()


def pika_round_trip(url: str, queue: str = "bench") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_publish("", queue, b"x")
    method, _props, _body = channel.basic_get(queue, auto_ack=True)
    assert method is not None
    connection.close()


def measure_start(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "tcp": [], "pika": [], "stop": []}
    for i in range(runs):
        t0 = time.perf_counter()
        with running_broker() as broker:
            t1 = time.perf_counter()
            if i % 2:  # alternate: the first client is a raw TCP connect or a pika open
                tcp_accepted(broker.port)
                out["tcp"].append(ms(time.perf_counter() - t0))
            else:
                connection = pika.BlockingConnection(pika.URLParameters(broker.url))
                out["pika"].append(ms(time.perf_counter() - t0))
                connection.close()
            out["start"].append(ms(t1 - t0))
            t2 = time.perf_counter()
        out["stop"].append(ms(time.perf_counter() - t2))
    return out


def measure_shared(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"test": [], "publish_get": []}
    with running_broker() as broker:
        pika_round_trip(broker.url)  # warm
        for _ in range(runs):
            t0 = time.perf_counter()
            pika_round_trip(broker.url)
            out["test"].append(ms(time.perf_counter() - t0))
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        channel = connection.channel()
        channel.queue_declare("bench")
        for _ in range(runs):
            t0 = time.perf_counter()
            channel.basic_publish("", "bench", b"x")
            method, _props, _body = channel.basic_get("bench", auto_ack=True)
            out["publish_get"].append(ms(time.perf_counter() - t0))
            assert method is not None
        connection.close()
    return out


def measure_fresh(runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with running_broker() as broker:
            pika_round_trip(broker.url)
        samples.append(ms(time.perf_counter() - t0))
    return samples


def measure_subprocess(runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1",
                                 "--port", str(port), "--data-dir", "none",
                                 "--metrics-port", "0", "--management-port", "0",
                                 "--log-level", "warning"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = t0 + 30
            while True:
                try:
                    tcp_accepted(port)
                    break
                except OSError:
                    if time.perf_counter() > deadline or proc.poll() is not None:
                        raise RuntimeError("the subprocess broker did not start") from None
                    time.sleep(0.002)
            samples.append(ms(time.perf_counter() - t0))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return samples


def measure_import(runs: int) -> list[float]:
    """import amqp_broker.testing in a fresh interpreter (paid once per test run), beyond
    what the interpreter with pika imported costs anyway."""
    code = ("import time, pika; t = time.perf_counter(); import amqp_broker.testing; "
            "print(time.perf_counter() - t)")
    return [ms(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout))
            for _ in range(runs)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--subprocess-runs", type=int, default=10)
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = p.parse_args()
    with running_broker() as broker:  # imports and first-use costs out of the figures
        pika_round_trip(broker.url)
    start = measure_start(args.runs)
    shared = measure_shared(args.runs)
    fresh = measure_fresh(args.runs)
    sub = measure_subprocess(args.subprocess_runs)
    imports = measure_import(args.subprocess_runs)
    rows: list[tuple[str, list[float]]] = [
        ("`running_broker()` returns (listening)", start["start"]),
        ("start to first accepted TCP connection", start["tcp"]),
        ("start to first open pika connection (AMQP handshake)", start["pika"]),
        ("stop (server, thread and loop ended)", start["stop"]),
        ("shared broker: connect, declare, publish, get, close (one test)", shared["test"]),
        ("shared broker: publish + get on an open channel", shared["publish_get"]),
        ("fresh broker per test: start, connect, publish, get, close, stop", fresh),
        ("`import amqp_broker.testing` in a fresh interpreter (once per run)", imports),
        ("`python -m amqp_broker` subprocess to first accepted TCP connection", sub),
    ]
    report: Callable[[str], None] = print
    if args.markdown:
        report("| measure | runs | median ms | p90 ms | min ms |")
        report("|---|---|---|---|---|")
    for name, samples in rows:
        median, p90, low = summary(samples)
        if args.markdown:
            report(f"| {name} | {len(samples)} | {median:.1f} | {p90:.1f} | {low:.1f} |")
        else:
            report(f"{name:70s} n={len(samples):3d} median {median:7.1f} ms  "
                   f"p90 {p90:7.1f} ms  min {low:7.1f} ms")


if __name__ == "__main__":
    main()
