"""Large messages side by side: our broker and the reference RabbitMQ, alternating.

    python bench/large.py                      # 64 KiB x 20000 and 1 MiB x 2000, 3 runs each
    python bench/large.py --source /tmp/base   # our broker from another checkout (before/after)
    python bench/large.py --sizes 65536 --repeat 5 --no-rabbitmq

Starts our broker (`python -m amqp_broker`, cwd --source, in memory, uvloop when installed)
on a free port and stops it by pid at the end; the reference RabbitMQ must already answer on
--rabbitmq-port (this script never starts or stops it). Each size runs `amqpload --port P
--count N --size S --queue lm-bench`, ours then RabbitMQ, then RabbitMQ then ours, and prints
each run's msg/s, the medians and the ratio. Never a pass/fail on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AMQPLOAD = ROOT / "bench" / "out" / "amqpload"
COUNTS = {65536: 20000, 1048576: 2000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def amqpload(port: int, size: int, count: int, queue: str) -> float:
    out = subprocess.run([str(AMQPLOAD), "--port", str(port), "--count", str(count), "--size",
                          str(size), "--queue", queue], capture_output=True, text=True,
                         timeout=600, check=False)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    try:
        return float(json.loads(line)["msgs_per_s"])
    except (ValueError, KeyError):
        raise SystemExit(f"amqpload failed on port {port}: {out.stderr.strip()[-300:]}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=str(ROOT), help="checkout our broker runs from")
    ap.add_argument("--sizes", default="65536,1048576")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rabbitmq-port", type=int, default=5673)
    ap.add_argument("--no-rabbitmq", action="store_true")
    ap.add_argument("--queue", default="lm-bench")
    args = ap.parse_args()
    port = free_port()
    log = open(ROOT / "bench" / "out" / "broker-large.log", "w")  # noqa: SIM115
    broker = subprocess.Popen(
        [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", "none", "--log-level", "warning", "--management-port", "0",
         "--metrics-port", "0"],
        cwd=args.source, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": args.source})
    try:
        wait_port(port)
        for size in (int(s) for s in args.sizes.split(",")):
            count = COUNTS.get(size, 20000)
            ours: list[float] = []
            ref: list[float] = []
            cpu_per_msg: list[float] = []
            for i in range(args.repeat):
                order = [("ours", port), ("rabbitmq", args.rabbitmq_port)]
                if i % 2:
                    order.reverse()
                for name, p in order:
                    if name == "rabbitmq" and args.no_rabbitmq:
                        continue
                    cpu = cpu_seconds(broker.pid) if name == "ours" else 0.0
                    rate = amqpload(p, size, count, args.queue)
                    (ours if name == "ours" else ref).append(rate)
                    used = ""
                    if name == "ours":
                        per = (cpu_seconds(broker.pid) - cpu) / count * 1e6
                        cpu_per_msg.append(per)
                        used = f", broker CPU {per:,.0f} us/msg"
                    print(f"size {size} run {i + 1} {name}: {rate:,.0f} msg/s{used}", flush=True)
            mo = statistics.median(ours)
            if ref:
                mr = statistics.median(ref)
                print(f"size {size} x {count}: ours {mo:,.0f}, rabbitmq {mr:,.0f} msg/s "
                      f"(medians of {args.repeat}), ratio {mo / mr:.2f}; our broker's CPU "
                      f"{statistics.median(cpu_per_msg):,.0f} us/msg", flush=True)
            else:
                print(f"size {size} x {count}: ours {mo:,.0f} msg/s (median of {args.repeat}), "
                      f"broker CPU {statistics.median(cpu_per_msg):,.0f} us/msg", flush=True)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()


if __name__ == "__main__":
    main()
