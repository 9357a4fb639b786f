"""Integration tests with non-Python clients: Debian's amqp-tools (librabbitmq-c)
and Node's amqplib. Each is skipped, with the reason, when it is not available."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pika
import pytest

from helpers import BrokerProcess, pika_connect

TOOLS = ("amqp-publish", "amqp-consume", "amqp-declare-queue", "amqp-get", "amqp-delete-queue")
missing_tools = [t for t in TOOLS if shutil.which(t) is None]
needs_amqp_tools = pytest.mark.skipif(
    bool(missing_tools),
    reason=f"{', '.join(missing_tools)} not found on PATH (Debian package amqp-tools)")


def tool(broker: BrokerProcess, name: str, *args: str, stdin: bytes | None = None,
         timeout: float = 10) -> subprocess.CompletedProcess[bytes]:
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}/%2F"
    proc = subprocess.run([name, "--url", url, *args], input=stdin, capture_output=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{name} {args} exited {proc.returncode}: "
                                  f"{proc.stderr.decode(errors='replace')}")
    return proc


@needs_amqp_tools
def test_amqp_tools_declare_publish_consume(broker: BrokerProcess, uid: str) -> None:
    q = "tools-" + uid
    out = tool(broker, "amqp-declare-queue", "-q", q).stdout.decode().strip()
    assert out == q
    tool(broker, "amqp-publish", "-r", q, "-b", "hello from amqp-publish",
         "-C", "text/plain", "-H", "x-origin: tools", "-p")
    tool(broker, "amqp-publish", "-r", q, "-l", stdin=b"line one\nline two\n")
    consumed = tool(broker, "amqp-consume", "-q", q, "-c", "3", "cat").stdout
    assert consumed == b"hello from amqp-publishline one\nline two\n"
    got = subprocess.run(["amqp-get", "--url", f"amqp://guest:guest@127.0.0.1:{broker.port}",
                          "-q", q], capture_output=True, timeout=10)
    assert got.returncode != 0  # queue empty: every message was consumed and acked
    tool(broker, "amqp-delete-queue", "-q", q)


@needs_amqp_tools
def test_amqp_tools_server_named_queue_and_get(broker: BrokerProcess, uid: str) -> None:
    name = tool(broker, "amqp-declare-queue", "-q", "").stdout.decode().strip()
    assert name.startswith("amq.gen-")  # not exclusive, so it outlives the tool
    tool(broker, "amqp-publish", "-r", name, "-b", "gotten")
    assert tool(broker, "amqp-get", "-q", name).stdout == b"gotten"
    tool(broker, "amqp-delete-queue", "-q", name)


@needs_amqp_tools
def test_amqp_tools_consume_from_exchange(broker: BrokerProcess, uid: str) -> None:
    q = "tools-x-" + uid
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}"
    # amqp-consume declares the queue (auto-delete), binds it to the exchange, then consumes
    consumer = subprocess.Popen(["amqp-consume", "--url", url, "-q", q, "-e", "amq.topic",
                                 "-r", f"tools.{uid}.#", "-c", "2", "cat"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while _consumer_count(broker, q) < 1:
            assert consumer.poll() is None, consumer.stderr.read() if consumer.stderr else ""
            assert time.monotonic() < deadline, "amqp-consume did not start consuming"
            time.sleep(0.05)
        tool(broker, "amqp-publish", "-e", "amq.topic", "-r", f"tools.{uid}.a", "-b", "one;")
        tool(broker, "amqp-publish", "-e", "amq.topic", "-r", f"other.{uid}", "-b", "no;")
        tool(broker, "amqp-publish", "-e", "amq.topic", "-r", f"tools.{uid}.b.c", "-b", "two;")
        out, err = consumer.communicate(timeout=10)
        assert consumer.returncode == 0, err
        assert out == b"one;two;"
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(5)
    assert _consumer_count(broker, q) == -1  # auto-deleted when amqp-consume cancelled


def _consumer_count(broker: BrokerProcess, q: str) -> int:
    """Consumers of queue q, or -1 when it does not exist."""
    conn = pika_connect(broker.port)
    try:
        return int(conn.channel().queue_declare(q, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
        return -1
    finally:
        conn.close()


# --- Node amqplib ------------------------------------------------------------------

NODE_SCRIPT = r"""
const amqp = require('amqplib');
(async () => {
  const [url, queue] = process.argv.slice(2);
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, {exclusive: true});
  const acked = [];
  for (let i = 0; i < 20; i++) {
    ch.sendToQueue(queue, Buffer.from('m' + i), {headers: {i: i}, contentType: 'text/plain'},
                   (err) => { if (err) throw err; acked.push(i); });
  }
  await ch.waitForConfirms();
  const got = [];
  await new Promise((resolve) => {
    ch.consume(queue, (msg) => {
      got.push([msg.content.toString(), msg.properties.headers.i,
                msg.properties.contentType, msg.fields.redelivered]);
      ch.ack(msg);
      if (got.length === 20) resolve();
    });
  });
  const empty = await ch.checkQueue(queue);
  await ch.close();
  await conn.close();
  console.log(JSON.stringify({acked: acked.length, got, remaining: empty.messageCount}));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def amqplib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for cmd, package in (("node", "nodejs"), ("npm", "npm")):
        if shutil.which(cmd) is None:
            pytest.skip(f"{cmd} not found on PATH (Debian package {package})")
    project = tmp_path_factory.mktemp("node-amqplib")
    (project / "package.json").write_text(json.dumps({"name": "amqp-broker-it",
                                                      "version": "1.0.0", "private": True}))
    try:
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                               "amqplib"], cwd=project, capture_output=True, timeout=90,
                              env={**os.environ, "npm_config_update_notifier": "false"})
    except subprocess.TimeoutExpired:
        pytest.skip("npm install amqplib timed out")
    if proc.returncode != 0 or not (project / "node_modules" / "amqplib").exists():
        pytest.skip(f"npm install amqplib failed: {proc.stderr.decode(errors='replace')[-500:]}")
    (project / "roundtrip.js").write_text(NODE_SCRIPT)
    return project


@pytest.mark.time_limit(120)
def test_node_amqplib_confirm_publish_consume_ack(broker: BrokerProcess, amqplib_dir: Path,
                                                  uid: str) -> None:
    proc = subprocess.run(["node", "roundtrip.js", f"amqp://guest:guest@127.0.0.1:{broker.port}",
                           "node-" + uid], cwd=amqplib_dir, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["acked"] == 20
    assert result["got"] == [[f"m{i}", i, "text/plain", False] for i in range(20)]
    assert result["remaining"] == 0
