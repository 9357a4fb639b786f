"""The dashboards against live data: a real Prometheus (the Debian package's binary, when
installed; skipped otherwise) scrapes a broker under a little traffic with the stack's
scrape config, and every expression of our Grafana dashboard, and of RabbitMQ's
Overview dashboard when its source is at hand, must return data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import BrokerProcess, free_port, pika_connect, port_open, stop_process

DOCKER = Path(__file__).resolve().parent.parent / "docker"
RABBITMQ_DASHBOARD = ("deps/rabbitmq_prometheus/docker/grafana/dashboards/"
                      "RabbitMQ-Overview.json")
# RabbitMQ's source as a bare git dir: RABBITMQ_SOURCE_GIT, else where the search tool's
# fetch puts it, beside the checkout (the RabbitMQ half is skipped when it is absent)
MIRROR = Path(os.environ.get("RABBITMQ_SOURCE_GIT") or Path(__file__).resolve().parents[2]
              / ".mirror" / "rabbitmq+rabbitmq-server" / "repo")
NAMESPACE = "amqp-broker"


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for panel in dashboard["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            out += [t["expr"] for t in sub.get("targets", []) if t.get("expr")]
    return out


def _substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", "20s").replace("$__range", "2m")
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    if os.environ.get("AMQP_TEST_PORT"):
        pytest.skip("needs a private broker")
    tmp = tmp_path_factory.mktemp("live")
    metrics_port = free_port()
    broker = BrokerProcess(data_dir=None, log_path=tmp / "broker.log",
                           extra_args=("--metrics-port", str(metrics_port)))
    prom: subprocess.Popen[bytes] | None = None
    try:
        broker.start()
        # the stack's scrape config, aimed at this broker and scraping every second
        config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(DOCKER / "prometheus" / r) for r in config["rule_files"]]
        for job in config["scrape_configs"]:
            job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
            for static in job["static_configs"]:
                static["targets"] = [f"127.0.0.1:{metrics_port}"]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_port = free_port()
        with open(tmp / "prometheus.log", "wb") as log:
            prom = subprocess.Popen(
                [binary, f"--config.file={tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not port_open(prom_port) and time.monotonic() < deadline:
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        # traffic of every kind the dashboards show, for a while (rates need samples)
        conn = pika_connect(broker.port)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("live-q")
        ch.queue_declare("live-auto")
        end = time.monotonic() + 8
        i = 0
        while time.monotonic() < end:
            ch.basic_publish("", "live-q", b"x" * (i % 3000))
            ch.basic_publish("", "live-auto", b"y")
            ch.basic_publish("amq.direct", "nowhere", b"z")
            ch.basic_get("live-q", auto_ack=i % 2 == 0)
            ch.basic_get("live-auto", auto_ack=True)
            ch.basic_get("live-auto", auto_ack=True)  # mostly empty
            i += 1
            time.sleep(0.02)
        ch.basic_consume("live-auto", lambda *a: None, auto_ack=True)
        conn.process_data_events(time_limit=3)  # consumers and publishers exist meanwhile
        yield {"url": f"http://127.0.0.1:{prom_port}", "conn": conn, "broker": broker}
        conn.close()
    finally:
        if prom is not None:
            stop_process(prom, 10)
        broker.stop()


def query(url: str, expr: str) -> list[Any]:
    full = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(full, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def test_our_dashboard_shows_live_data(live: dict[str, Any]) -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "amqp-broker.json").read_text())
    values = {"job": "amqp-broker", "per_object_job": "amqp-broker-per-object",
              "instance": ".*"}
    empty = []
    for expr in _exprs(dashboard):
        if "ALERTS" in expr:
            continue  # no alert fires on a healthy broker
        if not query(live["url"], _substitute(expr, values)):
            empty.append(expr)
    assert not empty, empty


def test_rabbitmq_overview_dashboard_shows_live_data(live: dict[str, Any]) -> None:
    try:
        text = subprocess.run(["git", f"--git-dir={MIRROR}", "show", f"HEAD:{RABBITMQ_DASHBOARD}"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("RabbitMQ's source (for its dashboard) is not at hand")
    dashboard = json.loads(text)
    (identity,) = query(live["url"], 'rabbitmq_identity_info{rabbitmq_endpoint="aggregated"}')
    values = {"namespace": NAMESPACE, "rabbitmq_cluster": identity["metric"]["rabbitmq_cluster"],
              "endpoint": "aggregated"}
    empty = []
    for expr in _exprs(dashboard):
        result = query(live["url"], _substitute(expr, values))
        if not result:
            empty.append(expr)
    # its message size panels divide increases in buckets no message reached (NaN, shown
    # as 0 by Grafana) but still return series; every panel has data
    assert not empty, "\n".join(empty)
    assert re.search(r"rabbitmq_global_publishers", text)
