"""Topic routing under adversarial bindings: cost per message, and the worst wait of
another connection meanwhile, our broker and the reference RabbitMQ side by side.

    python bench/bench_topic.py                       # both sets, both brokers
    python bench/bench_topic.py --sets issue --ours-only
    python bench/bench_topic.py --ours-src /tmp/before   # our broker from another checkout

The binding sets (issue 9, item 3) are patterns `#.a.#.b.#...`: literal words drawn
from {a, b}, a '#' before each, every other pattern ending in '#' too, bound to 100
exclusive queues of one topic exchange. Routing keys are random words over {a, b}.

- `issue`: 10,000 bindings of 15 to 30 literal words, 100-word keys (the issue's set).
  RabbitMQ's time per message grows about tenfold with every 4 more key words on such
  sets (300 of these bindings: 0.9 s at 16 words, 54 s at 24), so it gets this set only
  with --rabbitmq-issue-set, bounded by --timeout.
- `mild`: 1,000 bindings of 6 to 10 literal words, 18-word keys, on both brokers
  (a few seconds per message on RabbitMQ).

For each broker and set: bind the set (timed), then a probe process sends basic.qos on
its own connection in a loop, round trip after round trip, while a publisher process
publishes --messages messages with publisher confirms, each with a fresh key (no cache
can help), then --repeats more with one repeated key. Reported: seconds per message
(publish to confirm), the probe's worst and 99th percentile round trip while the
publisher ran and during an idle second before it, and how many queues the messages
reached (the same on both brokers when they route alike). Everything is deleted at the
end (the queues are exclusive, the exchange is deleted). Prints figures, asserts
nothing; --markdown FILE also writes them as a markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amqp_mem import REPO, ReferenceRabbit, amqp_answers, free_port  # noqa: E402

sys.path.insert(0, str(REPO))
from conformance.childproc import stop_process  # noqa: E402

EXCHANGE = "bench.topic.adv"
QUEUES = 100


@dataclass(frozen=True)
class BindingSet:
    name: str
    bindings: int
    literals: tuple[int, int]  # literal words per pattern, least and most
    key_words: int


SETS = {"issue": BindingSet("issue", 10_000, (15, 30), 100),
        "mild": BindingSet("mild", 1_000, (6, 10), 18)}


def patterns(bset: BindingSet, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(bset.bindings):
        words = [rng.choice("ab") for _ in range(rng.randint(*bset.literals))]
        out.append("#." + ".#.".join(words) + (".#" if i % 2 else ""))
    return out


def keys(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [".".join(rng.choice("ab") for _ in range(words)) for _ in range(count)]


def connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=port, credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0, blocked_connection_timeout=3600, socket_timeout=60, stack_timeout=60))


# --- the two helper processes ---------------------------------------------------------------

def probe(port: int, pipe: Pipe) -> None:
    """basic.qos round trips on its own connection until told to stop; sends back
    (start time, round trip) pairs."""
    conn = connect(port)
    ch = conn.channel()
    samples: list[tuple[float, float]] = []
    pipe.send("ready")
    while not pipe.poll():
        t0 = time.perf_counter()
        ch.basic_qos(prefetch_count=1)
        samples.append((t0, time.perf_counter() - t0))
        time.sleep(0.001)
    pipe.recv()
    conn.close()
    pipe.send(samples)


def publisher(port: int, distinct: list[str], repeated: str, repeats: int, pipe: Pipe) -> None:
    """Publishes with confirms; sends back (phase, start, seconds) per message."""
    conn = connect(port)
    ch = conn.channel()
    ch.confirm_delivery()
    pipe.send("ready")
    pipe.recv()
    timings: list[tuple[str, float, float]] = []
    for phase, key in [("distinct", k) for k in distinct] + [("repeated", repeated)] * repeats:
        t0 = time.perf_counter()
        ch.basic_publish(EXCHANGE, key, b"m")
        timings.append((phase, t0, time.perf_counter() - t0))
        pipe.send(timings[-1])
    conn.close()
    pipe.send("done")


# --- one broker, one set ---------------------------------------------------------------------

@dataclass
class Run:
    broker: str
    set: BindingSet
    bind_s: float = 0.0
    distinct_s: list[float] = field(default_factory=list)
    repeated_s: list[float] = field(default_factory=list)
    idle_max_ms: float = 0.0
    busy_max_ms: float = 0.0
    busy_p99_ms: float = 0.0
    probes: int = 0
    reached: list[int] = field(default_factory=list)  # messages per queue, in queue order
    note: str = ""


def run_set(broker: str, port: int, bset: BindingSet, args: argparse.Namespace) -> Run:
    run = Run(broker, bset)
    setup = connect(port)
    ch = setup.channel()
    ch.exchange_delete(EXCHANGE)
    ch.exchange_declare(EXCHANGE, "topic")
    queues = [ch.queue_declare(f"bench.topic.q{i}", exclusive=True).method.queue
              for i in range(QUEUES)]
    t0 = time.perf_counter()
    for i, pattern in enumerate(patterns(bset, args.seed)):
        ch.queue_bind(queues[i % QUEUES], EXCHANGE, pattern)
    run.bind_s = time.perf_counter() - t0
    ctx = mp.get_context("spawn")
    probe_pipe, probe_end = ctx.Pipe()
    pub_pipe, pub_end = ctx.Pipe()
    distinct = keys(args.messages, bset.key_words, args.seed + 1)
    repeated = keys(1, bset.key_words, args.seed + 2)[0]
    prober = ctx.Process(target=probe, args=(port, probe_end), daemon=True)
    pub = ctx.Process(target=publisher,
                      args=(port, distinct, repeated, args.repeats, pub_end), daemon=True)
    try:
        prober.start()
        pub.start()
        if probe_pipe.recv() != "ready" or pub_pipe.recv() != "ready":
            raise RuntimeError("helper processes did not start")
        time.sleep(1.0)  # an idle second: the probe's baseline
        busy_from = time.perf_counter()
        pub_pipe.send("go")
        deadline = time.monotonic() + args.timeout
        busy_until = 0.0
        while time.monotonic() < deadline:
            if pub_pipe.poll(0.2):
                msg = pub_pipe.recv()
                if msg == "done":
                    busy_until = time.perf_counter()
                    break
                phase, _start, seconds = msg
                (run.distinct_s if phase == "distinct" else run.repeated_s).append(seconds)
        else:
            busy_until = time.perf_counter()
            run.note = (f"timed out after {args.timeout:.0f} s: "
                        f"{len(run.distinct_s) + len(run.repeated_s)} messages confirmed")
            pub.kill()
        probe_pipe.send("stop")
        samples: list[tuple[float, float]] = probe_pipe.recv()
    finally:
        for proc in (pub, prober):
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    idle = [rtt for start, rtt in samples if start < busy_from]
    busy = [rtt for start, rtt in samples if busy_from <= start <= busy_until]
    run.probes = len(busy)
    run.idle_max_ms = max(idle, default=0.0) * 1000
    run.busy_max_ms = max(busy, default=0.0) * 1000
    run.busy_p99_ms = _percentile(busy, 0.99) * 1000
    if not run.note:
        run.reached = [ch.queue_declare(q, passive=True).method.message_count for q in queues]
    ch.exchange_delete(EXCHANGE)
    setup.close()  # the exclusive queues go with it
    return run


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- our broker --------------------------------------------------------------------------------

class OurBroker:
    """python -m amqp_broker from src (this checkout by default), in memory, on a free port."""

    def __init__(self, src: Path, log_path: Path) -> None:
        self.src, self.log_path, self.port = src, log_path, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(self.src)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port",
                 str(self.port), "--data-dir", "none", "--metrics-port", "0",
                 "--management-port", "0", "--log-level", "warning"],
                cwd=self.src, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not amqp_answers("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"our broker did not start; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc)


def commit_of(src: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- report -------------------------------------------------------------------------------------

def rows(runs: list[Run]) -> list[list[str]]:
    out = []
    for r in runs:
        distinct = statistics.median(r.distinct_s) if r.distinct_s else None
        repeated = statistics.median(r.repeated_s) if r.repeated_s else None
        out.append([
            r.set.name, f"{r.set.bindings:,} / {r.set.key_words}", r.broker, f"{r.bind_s:.1f}",
            _secs(distinct), _secs(max(r.distinct_s, default=None)), _secs(repeated),
            f"{r.busy_max_ms:.1f}", f"{r.busy_p99_ms:.1f}", f"{r.idle_max_ms:.1f}", str(r.probes),
            str(sum(1 for n in r.reached if n)) if r.reached else "-", r.note])
    return out


HEADER = ["set", "bindings / key words", "broker", "bind s", "s/msg (distinct keys, median)",
          "s/msg (worst)", "s/msg (repeated key)", "other conn. worst wait ms",
          "other conn. p99 ms", "idle worst ms", "probes", "queues reached", "note"]


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(HEADER)]
    for line in [HEADER, *table]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def write_markdown(path: Path, runs: list[Run], info: dict[str, str], command: str) -> None:
    lines = [f"## Topic routing, adversarial bindings (issue 9, item 3), {info['date']}", "",
             f"- machine: {info['machine']}; Python {platform.python_version()}",
             f"- our broker from {info['ours']}; reference: {info['rabbitmq']}",
             f"- command: `{command}`", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c or " " for c in r) + " |" for r in rows(runs)]
    same = _same_routing(runs)
    if same:
        lines += ["", same]
    path.write_text("\n".join(lines) + "\n")


def _same_routing(runs: list[Run]) -> str:
    notes = []
    for name in SETS:
        got = {r.broker: r.reached for r in runs if r.set.name == name and r.reached}
        if len(got) > 1:
            counts = list(got.values())
            same = all(c == counts[0] for c in counts)
            notes.append(f"{name} set: messages per queue {'identical' if same else 'DIFFER'} "
                         f"on {' and '.join(got)}")
    return "; ".join(notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="mild,issue", help="binding sets: mild, issue")
    ap.add_argument("--messages", type=int, default=5, help="messages with distinct keys")
    ap.add_argument("--repeats", type=int, default=5, help="messages with one repeated key")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--rabbitmq-only", action="store_true")
    ap.add_argument("--rabbitmq-issue-set", action="store_true",
                    help="run the issue set on RabbitMQ too (minutes per message)")
    ap.add_argument("--rabbitmq-port", type=int, default=5673)
    ap.add_argument("--ours-src", type=Path, default=REPO,
                    help="checkout to run our broker from (e.g. an older commit)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds one broker may take for one set's publishes")
    ap.add_argument("--markdown", type=Path, help="also write the figures as markdown")
    args = ap.parse_args(argv)
    chosen = [SETS[name] for name in args.sets.split(",")]
    runs: list[Run] = []
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
            "ours": f"{args.ours_src} at commit {commit_of(args.ours_src)}",
            "rabbitmq": "not run"}
    ours = None if args.rabbitmq_only else OurBroker(
        args.ours_src.resolve(), REPO / "bench" / "out" / "broker-topic.log")
    rabbit = None if args.ours_only else ReferenceRabbit(args.rabbitmq_port)
    try:
        if ours is not None:
            ours.start()
        if rabbit is not None:
            if rabbit.ensure():
                info["rabbitmq"] = f"RabbitMQ on port {rabbit.port} ({rabbit.note})"
            else:
                print(f"warning: {rabbit.note}; our broker only", file=sys.stderr)
                rabbit = None
        for bset in chosen:
            targets: list[tuple[str, int]] = []
            if ours is not None:
                targets.append(("ours", ours.port))
            if rabbit is not None and (bset.name != "issue" or args.rabbitmq_issue_set):
                targets.append(("rabbitmq", rabbit.port))
            for name, port in targets:
                print(f"{bset.name} set on {name} ...", file=sys.stderr, flush=True)
                runs.append(run_set(name, port, bset, args))
    finally:
        if ours is not None:
            ours.stop()
        if rabbit is not None:
            rabbit.stop()
    table = rows(runs)
    print_table(table)
    same = _same_routing(runs)
    if same:
        print(same)
    if args.markdown:
        write_markdown(args.markdown, runs, info, "python " + " ".join(
            [os.path.relpath(__file__, REPO), *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
