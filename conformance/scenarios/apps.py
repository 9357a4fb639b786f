"""Real applications end to end: Celery, kombu processes, rabbitmq-c amqp-tools, Node amqplib.

Every subprocess is started through ``ctx.popen`` (own session) and stopped by pid in
``ctx.cleanup`` (SIGTERM, SIGKILL after 5 s), also when the scenario times out.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..registry import scenario

G = "apps"
REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "conformance" / "apps" / "node"


def read_line(proc, timeout):
    """Next stdout line of ``proc`` within ``timeout`` seconds (None on timeout/EOF)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
        if r:
            line = proc.stdout.readline()
            return line.decode().strip() if line else None
    return None


def run_cmd(ctx, args, timeout, **kw):
    """Run a command to completion (stopped by pid on timeout); returns (rc, stdout, stderr)."""
    proc = ctx.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        ctx.stop_proc(proc)
        out, err = proc.communicate()
        return "timeout", out.decode(errors="replace"), err.decode(errors="replace")
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# ------------------------------------------------------------------------------------------------
# Celery
# ------------------------------------------------------------------------------------------------

def _start_worker(ctx, queue, backend, dlq=None):
    env = dict(os.environ, CONF_BROKER_URL=ctx.url, CONF_BACKEND=backend, CONF_QUEUE=queue,
               CONF_DLQ=dlq or "", PYTHONPATH=str(REPO))
    log = open(tempfile.mkstemp(prefix="conformance-celery-", suffix=".log")[1], "wb")
    proc = ctx.popen(
        [sys.executable, "-m", "celery", "-A", "conformance.apps.celery_app:app", "worker",
         "--pool", "threads", "--concurrency", "2", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-Q", queue, "--loglevel", "WARNING", "-n", f"{queue}@%h"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ctx.on_cleanup(lambda: os.unlink(log.name))
    return proc


@scenario(G, "celery", timeout=90)
def celery_app(ctx):
    """Celery worker (threads pool, concurrency 2) over AMQP: 500 tasks with rpc:// results,
    a group, autoretry and self.retry tasks, a task rejected with Reject(requeue=False) that is
    dead-lettered, and a chord (chords need a non-rpc backend: the filesystem backend)."""
    from celery import chord, group

    from ..apps.celery_app import make_app

    qa, qb, dlq = ctx.name("celery-rpc"), ctx.name("celery-chord"), ctx.name("celery-dlq")
    for n in (qa, qb):
        ctx.track_queue(n)
        ctx.track_exchange(n)
    conn = ctx.connect()
    ch = conn.channel()
    ctx.queue(ch, "celery-dlq")
    chord_dir = tempfile.mkdtemp(prefix="conformance-chord-")
    ctx.on_cleanup(lambda: shutil.rmtree(chord_dir, ignore_errors=True))
    file_backend = f"file://{chord_dir}"
    wa = _start_worker(ctx, qa, "rpc://", dlq)
    wb = _start_worker(ctx, qb, file_backend)

    app = make_app(ctx.url, "rpc://", qa, dlq)
    t0 = time.monotonic()
    results = [app.send_task("conf.add", (i, i)) for i in range(500)]
    values = [r.get(timeout=40) for r in results]
    ctx.log("tasks", count=len(values), all_correct=values == [2 * i for i in range(500)],
            elapsed=round(time.monotonic() - t0, 2))

    g = group(app.signature("conf.add", (i, 10)) for i in range(10))()
    ctx.log("group", result=g.get(timeout=20))

    ctx.log("autoretry", result=app.send_task("conf.flaky", (2,)).get(timeout=20))
    ctx.log("self_retry", result=app.send_task("conf.manual_retry", (2,)).get(timeout=20))

    rej = app.send_task("conf.reject", ("payload",))
    dead = None
    end = time.monotonic() + 15
    while time.monotonic() < end and dead is None:
        m, props, body = ch.basic_get(dlq, auto_ack=True)
        if m is not None:
            deaths = (props.headers or {}).get("x-death") or [{}]
            dead = {"task_id_matches": (props.headers or {}).get("id") == rej.id,
                    "reason": deaths[0].get("reason"), "task": (props.headers or {}).get("task")}
        else:
            time.sleep(0.1)
    ctx.log("rejected", dead_lettered=dead)

    app_b = make_app(ctx.url, file_backend, qb)
    c = chord((app_b.signature("conf.add", (i, i)) for i in range(10)),
              app_b.signature("conf.tsum"))()
    ctx.log("chord", result=c.get(timeout=30))
    app.close()
    app_b.close()
    for w in (wa, wb):
        ctx.stop_proc(w, grace=10)
    ctx.log("workers_stopped", exit_codes_ok=[w.returncode in (0, -15) for w in (wa, wb)])


# ------------------------------------------------------------------------------------------------
# kombu producer / consumer processes
# ------------------------------------------------------------------------------------------------

@scenario(G, "kombu_topic", timeout=40)
def kombu_topic(ctx):
    """Separate kombu consumer and producer processes, topic routing to three queues."""
    ex, prefix = ctx.name("kx"), ctx.name("kq")
    ctx.track_exchange(ex)
    for n in ("eu", "orders", "any_created"):
        ctx.track_queue(f"{prefix}.{n}")
    keys = ["orders.eu.created", "users.eu.deleted", "orders.us.shipped", "users.us.created",
            "x.eu", "orders"]
    # expected deliveries: eu: 3 (orders.eu.created, users.eu.deleted, x.eu); orders: 3;
    # any_created: 2  -> 8
    cons = ctx.popen([sys.executable, "-m", "conformance.apps.kombu_app", "consume", ctx.url, ex,
                      prefix, "8"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready = read_line(cons, 15)
    ctx.log("consumer", line=ready)
    rc, out, err = run_cmd(ctx, [sys.executable, "-m", "conformance.apps.kombu_app", "produce",
                                 ctx.url, ex] + keys, 20, cwd=REPO)
    ctx.log("producer", rc=rc, out=out.strip(), err=err.strip()[-300:] if rc else "")
    line = read_line(cons, 20)
    ctx.log("consumed", routed=json.loads(line) if line and line.startswith("{") else line)
    cons.wait(10)
    ctx.log("consumer_exit", rc=cons.returncode)


# ------------------------------------------------------------------------------------------------
# rabbitmq-c command line tools (Debian amqp-tools)
# ------------------------------------------------------------------------------------------------

def _conn_args(ctx):
    return ["-s", ctx.host, "--port", str(ctx.port), "--username", ctx.user,
            "--password", ctx.password]


@scenario(G, "amqp_tools", timeout=40)
def amqp_tools(ctx):
    """amqp-publish (body, headers, line mode) and amqp-consume -c N cat against a bound queue."""
    if not shutil.which("amqp-publish"):
        ctx.log("skipped", reason="amqp-tools not installed")
        return
    conn = ctx.connect()
    ch = conn.channel()
    x = ctx.exchange(ch, "x", "direct")
    q = ctx.queue(ch, "q")
    ch.queue_bind(q, x, "k")
    for body in ("one|", "two|"):
        rc, out, err = run_cmd(ctx, ["amqp-publish"] + _conn_args(ctx) +
                               ["-e", x, "-r", "k", "-b", body], 10)
        ctx.log("publish", rc=rc, err=err.strip()[-200:])
    proc = ctx.popen(["amqp-publish"] + _conn_args(ctx) + ["-e", x, "-r", "k", "-l"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(b"line-a\nline-b\n", timeout=10)
    ctx.log("publish_lines", rc=proc.returncode)
    rc, out, err = run_cmd(ctx, ["amqp-consume", *_conn_args(ctx), "-q", q, "-c", "4", "cat"],
                           15)
    ctx.log("consume", rc=rc, stdout=out, err=err.strip()[-200:])
    # properties set by amqp-publish, seen by pika
    run_cmd(ctx, ["amqp-publish"] + _conn_args(ctx) +
            ["-e", x, "-r", "k", "-b", "props", "-C", "text/plain", "-E", "utf-8", "-p",
             "-t", "reply.q", "-H", "color: blue"], 10)
    m, props, body = None, None, None
    for _ in range(50):
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m:
            break
        time.sleep(0.05)
    ctx.log("pika_sees", body=body, content_type=props.content_type if m else None,
            content_encoding=props.content_encoding if m else None,
            delivery_mode=props.delivery_mode if m else None,
            reply_to=props.reply_to if m else None, headers=props.headers if m else None)
    # amqp-consume with -e/-r declares its own exclusive server-named queue and binds it
    cons = ctx.popen(["amqp-consume"] + _conn_args(ctx) + ["-e", x, "-r", "k2", "-c", "1", "cat"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.7)
    run_cmd(ctx, ["amqp-publish"] + _conn_args(ctx) + ["-e", x, "-r", "k2", "-b", "bound"], 10)
    try:
        out, err = cons.communicate(timeout=10)
        ctx.log("consume_bound", rc=cons.returncode, stdout=out.decode())
    except subprocess.TimeoutExpired:
        ctx.stop_proc(cons)
        ctx.log("consume_bound", rc="timeout")
    # wrong password: tool exits non-zero
    rc, out, err = run_cmd(ctx, ["amqp-publish", "-s", ctx.host, "--port", str(ctx.port),
                                 "--username", "guest", "--password", "wrong", "-e", x, "-r", "k",
                                 "-b", "nope"], 10)
    ctx.log("bad_login", rc_nonzero=rc != 0)


# ------------------------------------------------------------------------------------------------
# Node amqplib
# ------------------------------------------------------------------------------------------------

@scenario(G, "node_amqplib", timeout=40)
def node_amqplib(ctx):
    """Node amqplib: confirm channel publishes 200 messages, a second channel consumes and acks."""
    if not (NODE_DIR / "node_modules" / "amqplib").exists() or not shutil.which("node"):
        ctx.log("skipped", reason="node or node_modules/amqplib missing")
        return
    q = ctx.name("node")
    ctx.track_queue(q)
    rc, out, err = run_cmd(ctx, ["node", "app.js", ctx.url, q, "200"], 30, cwd=NODE_DIR)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    ctx.log("node", rc=rc, result=json.loads(lines[-1]) if lines else None,
            stderr=err.strip()[-300:] if rc else "")
