"""Throughput and latency benchmark: our broker against the reference RabbitMQ, side by side.

Runs amqpload (a C load generator on rabbitmq-c, built into bench/out/ if missing) for each scenario
against both brokers, alternating them, --repeat times, and prints medians, the ratio ours/RabbitMQ
and our broker's peak RSS. See bench/README.md for the scenarios and their targets.

  python bench/run.py                                   # all scenarios, 3 repetitions
  python bench/run.py --scenarios 1,3 --count-scale 0.1 --repeat 1   # quick check
  python bench/run.py --markdown bench/RESULTS.md       # also write a markdown report
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from amqp_mem import (  # bench/ is not a package: imported via sys.path
    MB,
    OUT_DIR,
    REFERENCE_SCRIPT,
    REPO,
    AmqpError,
    OurBroker,
    RawAmqp,
    ReferenceRabbit,
    RssSampler,
    delete_queues,
    raise_fd_limit,
)

AMQPLOAD = OUT_DIR / "amqpload"
BUILD_SCRIPT = REFERENCE_SCRIPT.parent / "build-amqpload.sh"
QUEUE = (
    "amqpbench"  # amqpload --queue: it uses QUEUE, QUEUE-d (durable), QUEUE.N / QUEUE-d.N (fanout)
)
BASE = {"count": 200_000, "size": 16}


@dataclass(frozen=True)
class Scenario:
    num: int
    name: str
    options: dict[str, Any]  # amqpload long options; True means a bare flag
    metric: str = "msgs_per_s"  # key of amqpload's JSON line
    unit: str = "msg/s"
    target: float = 0.6  # ratio ours/RabbitMQ (throughput) or our absolute p99 in ms
    lower_is_better: bool = False

    def argv(self, count_scale: float) -> list[str]:
        opts = {**BASE, **self.options}
        opts["count"] = max(100, int(opts["count"] * count_scale))
        out: list[str] = []
        for k, v in opts.items():
            out += [f"--{k}"] if v is True else [f"--{k}", str(v)]
        return out

    def consumers(self) -> int:
        return int(self.options.get("consumers", 1))

    def target_text(self) -> str:
        return f"p99 <= {self.target:g} ms" if self.lower_is_better else f"ratio >= {self.target:g}"


SCENARIOS = [
    Scenario(1, "baseline 16 B", {}),
    Scenario(2, "autoack", {"autoack": True}),
    Scenario(3, "confirms (window 100)", {"confirm": 100}),
    Scenario(
        4,
        "durable+persistent+confirm, 1 KB",
        {"durable": True, "persistent": True, "confirm": 100, "size": 1024},
        target=0.9,
    ),
    Scenario(5, "fanout to 3 queues", {"fanout": True, "consumers": 3}, unit="deliveries/s"),
    Scenario(
        6,
        "latency at 5000 msg/s, 256 B",
        {"rate": 5000, "size": 256, "count": 50_000},
        metric="p99_ms",
        unit="p99 ms",
        target=2.0,
        lower_is_better=True,
    ),
    Scenario(7, "10 producers, 10 consumers", {"producers": 10, "consumers": 10}),
]


@dataclass
class Result:
    values: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    peak_rss: int = 0

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_amqpload() -> Path:
    if AMQPLOAD.exists():
        return AMQPLOAD
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log(f"building {AMQPLOAD} ...")
    subprocess.run(["bash", str(BUILD_SCRIPT), str(AMQPLOAD)], check=True, timeout=600)
    return AMQPLOAD


def bench_queue_names(sc: Scenario) -> list[str]:
    names = [QUEUE, f"{QUEUE}-d"]
    for i in range(max(sc.consumers(), 1)):
        names += [f"{QUEUE}.{i}", f"{QUEUE}-d.{i}"]
    return names


def cleanup(port: int, sc: Scenario) -> str | None:
    """Deletes the bench queues so no backlog carries over; returns an error text if it failed."""
    try:
        delete_queues("127.0.0.1", port, bench_queue_names(sc))
        return None
    except (OSError, AmqpError) as e:
        return f"cleanup failed: {e}"


def run_amqpload(
    port: int, sc: Scenario, args: argparse.Namespace, pid: int | None
) -> tuple[dict | None, str, int]:
    """One amqpload run; returns (parsed JSON or None, error text, peak RSS seen during it)."""
    cmd = [str(AMQPLOAD), "--port", str(port), "--queue", QUEUE, *sc.argv(args.count_scale)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )  # amqpload forks: kill its whole group on timeout
    with RssSampler(pid) as sampler:
        try:
            out, err = proc.communicate(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
            return None, f"timed out after {args.run_timeout:.0f}s", sampler.peak
    line = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        data = None
    if proc.returncode != 0 or not data or not data.get("ok"):
        return data, f"amqpload rc={proc.returncode}: {(err.strip() or line)[-200:]}", sampler.peak
    return data, "", sampler.peak


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load": load,
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
    }


def broker_version(port: int) -> str:
    try:
        c = RawAmqp("127.0.0.1", port, timeout=10)
    except (OSError, AmqpError):
        return "?"
    props = c.server_properties
    c.close()
    return f"{props.get('product', '?')} {props.get('version', '')}".strip()


def fmt(v: float | None, sc: Scenario) -> str:
    if v is None:
        return "FAIL"
    return f"{v:.2f}" if sc.lower_is_better else f"{v:,.0f}"


def table_rows(
    results: dict[tuple[int, str], Result], scenarios: list[Scenario], with_rmq: bool
) -> list[list[str]]:
    rows = []
    for sc in scenarios:
        ours, theirs = results[(sc.num, "ours")], results.get((sc.num, "rabbitmq"))
        om, tm = ours.median(), theirs.median() if theirs else None
        ratio = om / tm if om is not None and tm else None
        if sc.lower_is_better:
            meets = "?" if om is None else ("yes" if om <= sc.target else "NO")
        else:
            meets = "?" if ratio is None else ("yes" if ratio >= sc.target else "NO")
        ratio_txt = (
            "-"
            if ratio is None
            else f"{ratio:.2f}" + (" (p99 ours/RMQ, lower is better)" if sc.lower_is_better else "")
        )
        row = [str(sc.num), sc.name, sc.unit, fmt(om, sc)]
        if with_rmq:
            row += [fmt(tm, sc) if theirs else "-", ratio_txt]
        row += [sc.target_text(), meets, f"{ours.peak_rss / MB:.0f}" if ours.peak_rss else "?"]
        if with_rmq:
            row.append(f"{theirs.peak_rss / MB:.0f}" if theirs and theirs.peak_rss else "-")
        rows.append(row)
    return rows


def headers(with_rmq: bool) -> list[str]:
    h = ["#", "scenario", "metric", "ours (median)"]
    if with_rmq:
        h += ["RabbitMQ (median)", "ratio ours/RMQ"]
    h += ["target", "meets", "our peak RSS MB"]
    if with_rmq:
        h.append("RMQ peak RSS MB")
    return h


def print_table(rows: list[list[str]], hdr: list[str]) -> None:
    widths = [max(len(r[i]) for r in [hdr, *rows]) for i in range(len(hdr))]
    for r in [hdr, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def write_markdown(
    path: str,
    rows: list[list[str]],
    hdr: list[str],
    info: dict[str, str],
    notes: list[str],
    scenarios: list[Scenario],
    results: dict[tuple[int, str], Result],
    args: argparse.Namespace,
) -> None:
    lines = [
        f"# Benchmark results ({info['date']})",
        "",
        f"- machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; "
        f"load average at start {info['load']}",
        f"- Python {info['python']}; our broker at commit {info['commit']}; {info.get('ours', '')}",
        f"- reference: {info.get('rabbitmq', 'not run')}",
        (
            f"- command: `python bench/run.py {' '.join(args.argv)}` "
            f"(repeat {args.repeat}, count scale {args.count_scale:g})"
        ),
        "",
        "| " + " | ".join(hdr) + " |",
        "|" + "|".join("---" for _ in hdr) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "amqpload arguments and every run's value (ours / RabbitMQ):", ""]
    for sc in scenarios:
        per = " / ".join(
            ", ".join(fmt(v, sc) for v in results[(sc.num, b)].values) or "-"
            for b in ("ours", "rabbitmq")
            if (sc.num, b) in results
        )
        lines.append(f"- {sc.num}: `{' '.join(sc.argv(args.count_scale))}`: {per}")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    Path(path).write_text("\n".join(lines) + "\n")
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scenarios", default="1,2,3,4,5,6,7", help="comma list of scenario numbers (1-7)"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="repetitions per scenario and broker (default 3)"
    )
    ap.add_argument(
        "--count-scale",
        type=float,
        default=1.0,
        help="multiply message counts (e.g. 0.1 for a quick check)",
    )
    ap.add_argument("--ours-only", action="store_true", help="skip the reference RabbitMQ")
    ap.add_argument("--rabbitmq-port", type=int, default=5673)
    ap.add_argument("--port", type=int, default=0, help="port for our broker (default: a free one)")
    ap.add_argument(
        "--run-timeout", type=float, default=600, help="seconds before one amqpload run is killed"
    )
    ap.add_argument(
        "--no-fresh",
        dest="fresh",
        action="store_false",
        help="keep one broker for all scenarios (default: a new broker and data dir per scenario)",
    )
    ap.add_argument(
        "--markdown", metavar="OUT", help="also write the table as markdown (e.g. bench/RESULTS.md)"
    )
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    try:
        wanted = [int(s) for s in args.scenarios.split(",") if s.strip()]
    except ValueError:
        ap.error("--scenarios takes numbers like 1,2,3")
    by_num = {sc.num: sc for sc in SCENARIOS}
    if bad := [n for n in wanted if n not in by_num]:
        ap.error(f"unknown scenarios {bad}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    scenarios = [by_num[n] for n in wanted]
    ensure_amqpload()
    raise_fd_limit()

    info = machine_info()
    notes: list[str] = []
    results: dict[tuple[int, str], Result] = {}
    ours = OurBroker(port=args.port, log_path=OUT_DIR / "broker-bench.log")
    rabbit = None if args.ours_only else ReferenceRabbit(args.rabbitmq_port)
    try:
        if rabbit is not None:
            if rabbit.ensure():
                info["rabbitmq"] = (
                    f"{broker_version(rabbit.port)} on port {rabbit.port} ({rabbit.note})"
                )
            else:
                notes.append(f"RabbitMQ was not run: {rabbit.note}")
                log(f"warning: {rabbit.note}; running our broker only")
                rabbit = None
        with_rmq = rabbit is not None
        for sc in scenarios:
            if args.fresh or not ours.alive():
                ours.stop()
                ours.start()
                info.setdefault("ours", broker_version(ours.port))
            results[(sc.num, "ours")] = Result()
            if with_rmq:
                results[(sc.num, "rabbitmq")] = Result()
            for rep in range(args.repeat):
                order = ["ours", "rabbitmq"] if rep % 2 == 0 else ["rabbitmq", "ours"]
                for target in order:
                    if target == "rabbitmq" and not with_rmq:
                        continue
                    if target == "ours" and not ours.alive():
                        notes.append(
                            f"scenario {sc.num}: our broker {ours.exit_note(3)}; restarted"
                        )
                        ours.stop()
                        ours.start()
                    port = ours.port if target == "ours" else rabbit.port  # type: ignore[union-attr]
                    pid = ours.pid if target == "ours" else rabbit.pid  # type: ignore[union-attr]
                    res = results[(sc.num, target)]
                    err = cleanup(port, sc)
                    t0 = time.monotonic()
                    data, run_err, peak = (
                        run_amqpload(port, sc, args, pid) if not err else (None, err, 0)
                    )
                    res.peak_rss = max(res.peak_rss, peak)
                    if run_err:
                        res.failures.append(run_err)
                        notes.append(f"scenario {sc.num} rep {rep + 1} on {target}: {run_err}")
                        if target == "ours" and not ours.alive():
                            notes.append(f"scenario {sc.num}: our broker died: {ours.exit_note()}")
                    else:
                        res.values.append(float(data[sc.metric]))  # type: ignore[index]
                    shown = f"{fmt(float(data[sc.metric]), sc)} {sc.unit}" if data else ""
                    log(
                        f"scenario {sc.num} rep {rep + 1} {target:8}: {run_err or shown} "
                        f"({time.monotonic() - t0:.1f}s, peak RSS {peak / MB:.0f} MB)"
                    )
                    cleanup(port, sc)
    finally:
        ours.stop()
        if rabbit is not None:
            rabbit.stop()

    rows, hdr = table_rows(results, scenarios, with_rmq), headers(with_rmq)
    print()
    print_table(rows, hdr)
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"- {n}")
    if args.markdown:
        write_markdown(args.markdown, rows, hdr, info, notes, scenarios, results, args)
    return 1 if any(r.failures for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
