"""Runs conformance scenarios against the reference RabbitMQ and/or our broker and diffs them."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .childproc import stop_process
from .normalise import RULES, normalise
from .registry import Scenario, load_all

REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
NODE_DIR = Path(__file__).resolve().parent / "apps" / "node"
HOST = "127.0.0.1"
# The shared tools (reference-rabbitmq.sh) are in <shared>/tools, <shared> being the checkout's
# sibling directory "shared" unless this variable names another (bench/ uses the same one).
SHARED_ENV = "AMQP_SHARED_DIR"
# Scenarios that drive a system tool: (command, Debian package). Without it they are skipped
# (reported, not compared, not a failure).
TOOL_REQUIREMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "apps.amqp_tools": (("amqp-publish", "amqp-tools"), ("amqp-consume", "amqp-tools")),
    "apps.node_amqplib": (("node", "nodejs"),),
}


def shared_dir() -> Path:
    return Path(os.environ.get(SHARED_ENV) or REPO_ROOT.parent / "shared")


def ref_script() -> Path:
    return shared_dir() / "tools" / "reference-rabbitmq.sh"


def ci_mode() -> bool:
    """CI=true (as CI services set it): an installed reference RabbitMQ that fails is a failure."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def rabbitmq_installed() -> bool:
    """Whether rabbitmq-server is installed (Debian puts it in /usr/sbin, not always on PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which("rabbitmq-server", path=path) is not None


# ------------------------------------------------------------------------------------------------
# brokers
# ------------------------------------------------------------------------------------------------

def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class OurBroker:
    """Starts ``python -m amqp_broker`` on a free port with a temp data dir; stops it by pid."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.management_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.data_dir = tempfile.mkdtemp(prefix="conformance-data-")
        self.log_path = Path(tempfile.mkstemp(prefix="conformance-broker-", suffix=".log")[1])

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amqp_broker", "--host", HOST, "--port", str(self.port),
             "--data-dir", self.data_dir, "--metrics-port", "0", "--disk-free-limit", "1000000",
             "--management-port", str(self.management_port)],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"our broker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if port_open(self.port) and port_open(self.management_port):
                from .ctx import MANAGEMENT_PORTS
                MANAGEMENT_PORTS[self.port] = self.management_port
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"our broker did not listen on {self.port} within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclasses.dataclass
class RabbitUnavailable:
    """Why the reference RabbitMQ is not available. ``broken`` means it is installed (or the port
    is taken) but could not be used: a failure under CI; otherwise it is simply not installed."""

    reason: str
    broken: bool


class ReferenceRabbit:
    """Starts the reference RabbitMQ on ``port`` with the shared reference-rabbitmq.sh and stops it
    afterwards. A broker already listening there is used only with ``reuse`` (--reuse-rabbitmq)."""

    def __init__(self, port: int, reuse: bool = False):
        self.port = port
        self.reuse = reuse
        self.started = False

    def ensure(self, timeout: float = 180.0) -> RabbitUnavailable | None:
        """Returns None when available, else why it is not."""
        if port_open(self.port):
            if self.reuse:
                print(f"reusing the broker already listening on port {self.port} "
                      "(--reuse-rabbitmq)", file=sys.stderr)
                return None
            return RabbitUnavailable(
                f"port {self.port} is already in use by a broker this run did not start; pass "
                "--reuse-rabbitmq to compare against it, or --rabbitmq-port to start one elsewhere",
                broken=True)
        script = ref_script()
        if not script.exists():
            return RabbitUnavailable(
                f"{script} not found (set {SHARED_ENV} to the directory holding "
                "tools/reference-rabbitmq.sh)", broken=rabbitmq_installed())
        print(f"starting reference RabbitMQ on port {self.port} with {script} ...", file=sys.stderr)
        try:
            res = subprocess.run(["bash", str(script), "start", str(self.port)],
                                 capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
            output = (res.stdout or "") + (res.stderr or "")
            failed = res.returncode != 0
            what = f"{script.name} start exited {res.returncode}"
        except subprocess.TimeoutExpired as exc:
            output = _text(exc.stdout) + _text(exc.stderr)
            failed, what = True, f"{script.name} start timed out after {timeout:.0f}s"
        except OSError as exc:
            output, failed, what = "", True, f"{script.name} could not be run: {exc}"
        if not failed and port_open(self.port):
            self.started = True
            return None
        if not failed:
            what = f"{script.name} start exited 0 but nothing listens on port {self.port}"
        if not rabbitmq_installed():
            return RabbitUnavailable(
                "rabbitmq-server is not installed (Debian package rabbitmq-server) and "
                f"{script.name} did not install it: {output.strip()[-300:]}", broken=False)
        return RabbitUnavailable(
            f"reference RabbitMQ is installed but did not start on port {self.port}: {what}\n"
            + failure_cause(output), broken=True)

    def stop(self) -> None:
        if self.started:
            subprocess.run(["bash", str(ref_script()), "stop"], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
            self.started = False


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


_CAUSE = re.compile(r"error|fail|crash|eaddrinuse|already running|in use|denied|cannot|can't",
                    re.IGNORECASE)


def failure_cause(output: str, max_lines: int = 25) -> str:
    """The start script's own output, then the lines of the RabbitMQ logs that say why it failed:
    the files the script points at ("see PATH") and, under REF_RMQ_DIR (the script's data dir),
    server.out and the newest log in log/."""
    out = ["start script output:"]
    out += ["  " + ln for ln in output.strip().splitlines()[-10:]] or ["  (none)"]
    logs: list[Path] = [Path(m) for m in re.findall(r"see (/\S+)", output)]
    ref_dir = Path(os.environ.get("REF_RMQ_DIR") or "/tmp/reference-rabbitmq")
    logs.append(ref_dir / "server.out")
    with contextlib.suppress(OSError):
        logs += sorted((ref_dir / "log").glob("*.log"), key=lambda p: p.stat().st_mtime)[-1:]
    seen: set[Path] = set()
    for log in logs:
        if log in seen or not log.is_file():
            continue
        seen.add(log)
        try:
            lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines()
                     if ln.strip()]
        except OSError as exc:
            out.append(f"{log}: {exc}")
            continue
        causes = [ln for ln in lines if _CAUSE.search(ln)]
        picked = (causes or lines)[-max_lines:]
        out.append(f"{log} ({'lines naming the failure' if causes else 'last lines'}):")
        out += ["  " + ln[:300] for ln in picked] or ["  (empty)"]
    return "\n".join(out)


def ensure_node_modules(timeout: float = 180.0) -> str | None:
    if (NODE_DIR / "node_modules" / "amqplib").exists():
        return None
    npm = shutil.which("npm")
    if not npm:
        return "npm not found on PATH (Debian package npm), needed to install node_modules/amqplib"
    try:
        res = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "npm install timed out"
    if res.returncode != 0:
        return "npm install failed: " + res.stderr[-400:]
    return None


def missing_tools(selected: list[Scenario]) -> dict[str, str]:
    """{scenario name: why it cannot run} for the selected scenarios whose system tool is missing.
    Runs ``npm install`` for the Node app when node is there but its node_modules are not."""
    missing: dict[str, str] = {}
    for sc in selected:
        for cmd, package in TOOL_REQUIREMENTS.get(sc.name, ()):
            if shutil.which(cmd) is None:
                missing[sc.name] = f"{cmd} not found on PATH (Debian package {package})"
                break
        if sc.name.startswith("apps.node") and sc.name not in missing:
            reason = ensure_node_modules()
            if reason:
                missing[sc.name] = reason
    return missing


# ------------------------------------------------------------------------------------------------
# running one scenario (in a forked child so a hung client can be killed)
# ------------------------------------------------------------------------------------------------

def _child(sc: Scenario, port: int, conn) -> None:
    from .ctx import Ctx

    def on_term(signum, frame):
        raise SystemExit("terminated by runner (timeout)")

    signal.signal(signal.SIGTERM, on_term)
    ctx = Ctx(HOST, port, sc.name)
    error = None
    t0 = time.monotonic()
    try:
        sc.func(ctx)
    except BaseException as exc:  # noqa: BLE001 - everything unexpected is a harness error
        error = f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc(limit=6)
    else:
        tb = None
    problems = ctx.cleanup()
    conn.send({"events": ctx.events, "token": ctx.token, "error": error, "traceback": tb,
               "cleanup": problems, "seconds": round(time.monotonic() - t0, 2)})
    conn.close()


def run_one(sc: Scenario, port: int) -> dict[str, Any]:
    mp = multiprocessing.get_context("fork")
    parent, child = mp.Pipe(duplex=False)
    proc = mp.Process(target=_child, args=(sc, port, child), daemon=False)
    t0 = time.monotonic()
    proc.start()
    child.close()
    result = None
    if parent.poll(sc.timeout):
        with contextlib.suppress(EOFError):
            result = parent.recv()
    if result is None:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: the child runs its cleanup (stops its subprocesses)
            if parent.poll(15):
                with contextlib.suppress(EOFError):
                    result = parent.recv()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
            result = result or {"events": [], "token": "", "cleanup": []}
            result["error"] = f"timeout after {sc.timeout:.0f}s"
        else:
            result = {"events": [], "token": "", "cleanup": [],
                      "error": f"scenario process died (exit {proc.exitcode})"}
    proc.join(10)
    parent.close()
    result.setdefault("seconds", round(time.monotonic() - t0, 2))
    if not result.get("error") and result.get("cleanup"):
        result["error"] = "cleanup failed: " + "; ".join(result["cleanup"])
    result["normalised"] = normalise(result["events"], result.get("token", ""))
    return result


# ------------------------------------------------------------------------------------------------
# golden files
# ------------------------------------------------------------------------------------------------

def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def load_golden(name: str) -> dict | None:
    p = golden_path(name)
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    data["normalised"] = normalise(data["events"], data.get("token", ""))
    return data


def write_golden(name: str, result: dict) -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    # the run token is replaced right away so re-recording only changes files whose content changed
    # Identifiers that change on every run (run token, amq.gen-*, ctags, uuids, times) are
    # normalised before writing, so re-recording only touches files whose content changed.
    # Reply texts and server properties are kept verbatim (they are normalised when comparing).
    from .normalise import consumer_tag, run_token, server_named_queue, timestamps, uuids

    events = result["events"]
    for rule in (run_token, server_named_queue, consumer_tag, uuids, timestamps):
        events = rule(events, result["token"])
    data = {"scenario": name, "recorded_against": "reference RabbitMQ", "token": "<run>",
            "events": events}
    golden_path(name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def diff_text(a: Any, b: Any, a_name: str, b_name: str, limit: int = 40) -> str:
    al = json.dumps(a, indent=1, sort_keys=True).splitlines()
    bl = json.dumps(b, indent=1, sort_keys=True).splitlines()
    lines = list(difflib.unified_diff(al, bl, a_name, b_name, n=2, lineterm=""))
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m conformance", description=__doc__)
    p.add_argument("--against", choices=["rabbitmq", "ours", "both"], default="both")
    p.add_argument("--rabbitmq-port", type=int, default=5673)
    p.add_argument("--reuse-rabbitmq", action="store_true",
                   help="compare against the broker already listening on --rabbitmq-port (without "
                        "this, a port in use is an error: the runner starts its own RabbitMQ)")
    p.add_argument("--port", type=int, default=None,
                   help="use our broker already listening on this port instead of starting one")
    p.add_argument("-k", dest="select", action="append", default=[],
                   help="only scenarios whose name contains SUBSTRING (repeatable: any of them)")
    p.add_argument("--exclude", action="append", default=[],
                   help="skip scenarios whose name contains SUBSTRING (repeatable)")
    p.add_argument("--json", dest="json_out", default=None, help="write full results as JSON here")
    p.add_argument("--record", action="store_true",
                   help="run against RabbitMQ and (re)write conformance/golden/*.json")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print diffs/tracebacks in full")
    return p.parse_args(argv)


def _cell(res: dict | None) -> str:
    if res is None:
        return "-"
    if res.get("error"):
        return "ERROR"
    return f"ok ({len(res['events'])} ev, {res['seconds']:.1f}s)"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    scenarios = load_all()
    selected = [s for s in scenarios.values()
                if (not args.select or any(k in s.name for k in args.select))
                and not any(x in s.name for x in args.exclude)]
    if args.list:
        for s in selected:
            print(f"{s.name:45s} {s.doc.splitlines()[0] if s.doc else ''}")
        return 0
    if not selected:
        print("no scenarios selected", file=sys.stderr)
        return 2
    if args.record:
        args.against = "rabbitmq"

    want_rabbit = args.against in ("rabbitmq", "both")
    want_ours = args.against in ("ours", "both")
    rabbit = ReferenceRabbit(args.rabbitmq_port, reuse=args.reuse_rabbitmq)
    ours: OurBroker | None = None
    ours_port = args.port
    notes: list[str] = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        if want_rabbit:
            problem = rabbit.ensure()
            if problem and problem.broken and ci_mode():
                print(f"FAILED (CI=true): {problem.reason}", file=sys.stderr)
                return 2
            if problem:
                if args.against != "both":
                    print(f"RabbitMQ unavailable: {problem.reason}", file=sys.stderr)
                    return 2
                notes.append(f"RabbitMQ side SKIPPED: {problem.reason}\n(comparing ours with the "
                             "golden files instead"
                             + ("; under CI=true this is a failure)" if problem.broken else ")"))
                want_rabbit = False
        if want_ours and ours_port is None:
            ours = OurBroker()
            try:
                ours.start()
            except Exception as exc:
                print(f"could not start our broker: {exc}", file=sys.stderr)
                return 2
            ours_port = ours.port
        skipped = missing_tools(selected)
        for name, reason in skipped.items():
            notes.append(f"{name} SKIPPED: {reason}")
        for n in notes:
            print(n, file=sys.stderr)
        return _run(args, selected, want_rabbit, want_ours, ours_port, ours, skipped)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
        if ours is not None:
            ours.stop()
        rabbit.stop()


def _run(args, selected, want_rabbit, want_ours, ours_port, ours, skipped) -> int:
    results: list[dict] = []
    failures = 0
    rows: list[list[str]] = []
    details: list[str] = []
    both = want_rabbit and want_ours
    for sc in selected:
        entry: dict[str, Any] = {"scenario": sc.name, "group": sc.group}
        if sc.name in skipped:  # its system tool is missing: not run, not compared
            entry.update(status="skipped", reason=skipped[sc.name])
            rows.append([sc.name, "-", "-", "skipped"] if both else [sc.name, "-", "skipped"])
            results.append(entry)
            print(f"  {sc.name}: skipped ({skipped[sc.name]})", file=sys.stderr, flush=True)
            continue
        r_res = run_one(sc, args.rabbitmq_port) if want_rabbit else None
        o_res = None
        if want_ours:
            if ours is not None and ours.proc is not None and ours.proc.poll() is not None:
                o_res = {"events": [], "token": "", "normalised": [], "seconds": 0,
                         "error": f"our broker is not running (exit {ours.proc.returncode})"}
            else:
                o_res = run_one(sc, ours_port)
        golden = load_golden(sc.name)
        entry["rabbitmq"], entry["ours"] = r_res, o_res
        entry["golden"] = golden is not None

        if args.record and r_res is not None and not r_res.get("error"):
            write_golden(sc.name, r_res)
            golden = load_golden(sc.name)

        if both:
            ok = (not r_res["error"] and not o_res["error"]
                  and r_res["normalised"] == o_res["normalised"])
            status = "match" if ok else "DIFF"
            rows.append([sc.name, _cell(r_res), _cell(o_res), status])
            if not ok:
                details.append(_detail(sc.name, r_res, o_res, "rabbitmq", "ours", args.verbose))
        else:
            res = r_res if want_rabbit else o_res
            side = "rabbitmq" if want_rabbit else "ours"
            ok = not res["error"]
            if ok and golden is not None:
                ok = golden["normalised"] == res["normalised"]
            status = "pass" if ok else "fail"
            if golden is None and not res["error"]:
                status = "pass (no golden)"
            rows.append([sc.name, _cell(res), status])
            if not ok:
                details.append(_detail(sc.name, golden or {"normalised": None, "error": None},
                                       res, "golden", side, args.verbose))
        entry["status"] = status
        if not ok:
            failures += 1
        results.append(entry)
        print(f"  {sc.name}: {status}", file=sys.stderr, flush=True)

    header = (["scenario", "RabbitMQ", "ours", "match/DIFF"] if both
              else ["scenario", "result", "pass/fail"])
    print(_table(rows, header))
    for d in details:
        print()
        print(d)
    print()
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    ran = len(selected) - len(skipped)
    print(f"{len(selected)} scenarios, {ran - failures} ok, {failures} failing, "
          f"{len(skipped)} skipped (normalisers: {', '.join(n for n, _ in RULES)})")
    print(f"conformance: {ran - failures} passed, {failures} failed, {len(skipped)} skipped")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"against": args.against, "results": results, "failures": failures,
             "skipped": skipped}, indent=1,
            default=str))
    return 1 if failures else 0


def _detail(name, a, b, a_name, b_name, verbose) -> str:
    out = [f"=== {name}"]
    for side, res in ((a_name, a), (b_name, b)):
        if res and res.get("error"):
            out.append(f"{side} error: {res['error']}")
            if res.get("traceback") and verbose:
                out.append(res["traceback"])
    if a and b and a.get("normalised") is not None and b.get("normalised") is not None:
        out.append(diff_text(a["normalised"], b["normalised"], a_name, b_name,
                             limit=10_000 if verbose else 40))
    return "\n".join(out)
