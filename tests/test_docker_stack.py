"""The compose stack's configuration (docker/), checked without a Docker engine: the files
parse, Prometheus scrapes the broker's metrics port and paths, Grafana's data source is
that Prometheus, and every expression of our dashboard and alert rules names metrics the
broker serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pamqp import commands
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from amqp_broker.config import Config
from amqp_broker.metrics_http import create_metrics_app
from tests.inproc import Client, make_broker

DOCKER = Path(__file__).resolve().parent.parent / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "amqp-broker.json"
# series Prometheus itself makes (rule evaluation, scrape health), not the broker
PROMETHEUS_OWN = {"ALERTS", "ALERTS_FOR_STATE", "up", "scrape_duration_seconds"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "rate", "irate", "increase",
    "delta", "predict_linear", "histogram_quantile", "abs", "and", "or", "unless", "bool",
    "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "label_values",
    "time", "vector", "scalar", "clamp_min", "clamp_max", "inf", "nan",
}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


def prometheus_config() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text()))


def metric_names(expr: str) -> set[str]:
    """The metric names an expression (or a Grafana label_values query) selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    # label lists: by (...), on(...), group_left(...), the label argument of label_values
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)?\s*,\s*\w+\s*\)", r" \1 ", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", expr):
        name = m.group(0)
        after = expr[m.end():].lstrip()[:1]
        if after == "(" or name.lower() in PROMQL_WORDS or name.startswith("$"):
            continue
        if expr[max(0, m.start() - 1):m.start()] == "$":
            continue  # a Grafana variable
        names.add(name)
    return names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def served_names() -> set[str]:
    """Sample and family names of /metrics and /metrics/per-object after some traffic."""
    broker = make_broker()
    c = Client(broker)
    c.open_channel(1)
    c.send(commands.Queue.Declare(queue="q"), 1)
    c.publish(1, "", "q", b"x")
    client = TestClient(create_metrics_app(broker))
    names: set[str] = set()
    for path in ("/metrics", "/metrics/per-object"):
        for family in text_string_to_metric_families(client.get(path).text):
            names.add(family.name)
            names.update(s.name for s in family.samples)
    return names


def test_metric_names_extraction() -> None:
    expr = ('sum by (le) (increase(rabbitmq_message_size_bytes_bucket{job="$job", le="1e+06"}'
            '[$__range])) / on(instance) group_left(rabbitmq_node) rabbitmq_identity_info - up')
    assert metric_names(expr) == {"rabbitmq_message_size_bytes_bucket",
                                  "rabbitmq_identity_info", "up"}
    assert metric_names('label_values(rabbitmq_identity_info{job="$job"}, instance)') == {
        "rabbitmq_identity_info"}


# --- compose ---------------------------------------------------------------------------
def test_compose_services_and_pinned_images() -> None:
    services = compose()["services"]
    assert set(services) >= {"broker", "prometheus", "grafana"}
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: pin a version, not {image}"
    broker = services["broker"]
    published = {str(p).split(":")[-1] for p in broker["ports"]}
    assert published >= {"5672", "15672", "15692"}
    assert broker["healthcheck"]["test"] == ["CMD", "amqp-broker", "ctl", "ping"]


def test_dockerfile_labels_ports_and_healthcheck() -> None:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    for label in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text, label
    expose = re.search(r"^EXPOSE (.*)$", text, re.M)
    assert expose and set(expose.group(1).split()) >= {"5672", "15672", "15692"}
    check = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
    assert check and json.loads(check.group(1)) == ["amqp-broker", "ctl", "ping"]
    env = dict(re.findall(r"(AMQP_BROKER_\w+)=(\S+)", text))
    # the ports the image listens on are the ones it exposes (ctl ping reads the same
    # AMQP_BROKER_MANAGEMENT_PORT)
    assert env["AMQP_BROKER_METRICS_PORT"] == "15692"
    assert env["AMQP_BROKER_MANAGEMENT_PORT"] == "15672"
    assert Config().metrics_port == 15692 and Config().management_port == 15672


def test_prometheus_scrapes_the_broker_metrics_port_and_paths() -> None:
    cfg = prometheus_config()
    services = compose()["services"]
    container_ports = {str(p).split(":")[-1] for p in services["broker"]["ports"]}
    client = TestClient(create_metrics_app(make_broker()))
    paths = set()
    for job in cfg["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        paths.add(path)
        assert client.get(path).status_code == 200, path
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert host == "broker" and port == "15692" and port in container_ports
                # RabbitMQ's dashboards select a namespace label
                assert static["labels"]["namespace"]
    assert paths == {"/metrics", "/metrics/per-object"}
    # the config and its rule files are mounted where the command line says
    prom = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"] if v.startswith("./")}
    config_in = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file"))
    assert (DOCKER / mounts[config_in]).resolve() == DOCKER / "prometheus" / "prometheus.yml"
    for rules in cfg["rule_files"]:
        assert str(Path(config_in).parent / rules) in mounts
        assert (DOCKER / "prometheus" / rules).is_file()


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning = DOCKER / mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    prom_port = services["prometheus"]["ports"][0].split(":")[-1]
    assert source["type"] == "prometheus" and source["url"] == f"http://prometheus:{prom_port}"
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    (provider,) = providers["providers"]
    folder = provider["options"]["path"]
    assert (DOCKER / mounts[folder] / DASHBOARD.name).resolve() == DASHBOARD
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"
    dashboard = json.loads(DASHBOARD.read_text())
    (ds_var,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert ds_var["current"]["value"] == source["uid"]


# --- every expression names served metrics --------------------------------------------
def test_dashboard_queries_name_served_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = served_names() | PROMETHEUS_OWN
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) > 30
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        missing = names - served
        assert not missing, f"{expr}: {missing} not served"
        used |= names
    # what the issue asks to see: rates, depths, connections, channels, memory and disk
    # against their limits, alarms
    assert used >= {"rabbitmq_global_messages_received_total",
                    "rabbitmq_global_messages_delivered_total",
                    "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
                    "rabbitmq_connections", "rabbitmq_channels",
                    "rabbitmq_process_resident_memory_bytes",
                    "rabbitmq_resident_memory_limit_bytes",
                    "rabbitmq_disk_space_available_bytes",
                    "rabbitmq_disk_space_available_limit_bytes",
                    "rabbitmq_alarms_memory_used_watermark",
                    "rabbitmq_alarms_free_disk_space_watermark"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_alert_rules_name_served_metrics() -> None:
    rules = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    served = served_names() | PROMETHEUS_OWN
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert {"MemoryAlarm", "DiskAlarm", "BrokerDown"} <= {r["alert"] for r in alerts}
    for rule in alerts:
        missing = metric_names(rule["expr"]) - served
        assert not missing, f"{rule['alert']}: {missing} not served"
        assert rule["annotations"]["summary"]


def test_promtool_accepts_the_config_and_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    out = subprocess.run([promtool, "check", "config", "prometheus.yml"],
                         cwd=DOCKER / "prometheus", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool, "test", "rules", "alerts_test.yml"],
                         cwd=DOCKER / "prometheus", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
