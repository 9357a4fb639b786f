"""The command line: flags, AMQP_BROKER_* variables, validation, clear start-up errors."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pika
import pytest

from amqp_broker.cli import banner, config_from_args, load, main, parser
from amqp_broker.config import Config
from tests.helpers import BrokerProcess

REPO = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    config = config_from_args([])
    # no host: every IPv4 and IPv6 interface, as RabbitMQ (see test_parity)
    assert (config.host, config.port, config.data_dir) == ("", 5672, "data")
    assert config.loopback_users == ("guest",)
    assert config.log_format == "console"


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_BROKER_PORT", "5999")
    monkeypatch.setenv("AMQP_BROKER_DATA_DIR", "none")
    monkeypatch.setenv("AMQP_BROKER_LOG_FORMAT", "json")
    monkeypatch.setenv("AMQP_BROKER_ALLOW_REMOTE_GUEST", "1")
    config = config_from_args([])
    assert (config.port, config.data_dir, config.log_format) == (5999, None, "json")
    assert config.loopback_users == ()
    assert config_from_args(["--port", "6001"]).port == 6001  # the flag wins


@pytest.mark.parametrize("argv", [["--port", "99999"], ["--port", "x"],
                                  ["--log-format", "xml"], ["--log-level", "loud"]])
def test_bad_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        config_from_args(argv)
    assert info.value.code == 2


def test_help_documents_every_option() -> None:
    text = parser().format_help()
    for option in ("--host", "--port", "--data-dir", "--log-level", "--log-format",
                   "AMQP_BROKER_HOST", "AMQP_BROKER_DATA_DIR", "--metrics-port",
                   "--config", "AMQP_BROKER_CONFIG", "--definitions", "--tls-port",
                   "--tls-certfile", "--tls-keyfile", "--tls-cacertfile", "--management-port"):
        assert option in text


def test_unusable_data_dir_is_one_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["--data-dir", str(not_a_dir), "--port", "0", "--metrics-port", "0",
                 "--log-level", "error"]) == 1


def test_module_entry_point_prints_version() -> None:
    out = subprocess.run([sys.executable, "-m", "amqp_broker", "--version"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("amqp-broker ")


def test_vhosts_option(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from_args(["--vhosts", "/, app ,staging"])
    assert (config.default_vhost, config.vhosts) == ("/", ("app", "staging"))
    monkeypatch.setenv("AMQP_BROKER_VHOSTS", "dev")
    assert config_from_args([]).default_vhost == "dev"


def test_broker_serves_every_configured_vhost() -> None:
    from amqp_broker.broker import Broker

    broker = Broker(config_from_args(["--vhosts", "/,app", "--data-dir", "none"]))
    assert set(broker.vhosts) == {"/", "app"}


# ---------------------------------------------------------------- layers and files


def test_precedence_flag_variable_rabbitmq_variable_file(tmp_path: Path) -> None:
    path = tmp_path / "rabbitmq.conf"
    path.write_text("default_user = from-file\ndefault_pass = file-pass\ndefault_vhost = fv\n"
                    "heartbeat = 11\nchannel_max = 12\nframe_max = 8192\n")
    environ = {"RABBITMQ_DEFAULT_USER": "rabbit-user", "RABBITMQ_DEFAULT_PASS": "rabbit-pass",
               "AMQP_BROKER_DEFAULT_USER": "env-user", "AMQP_BROKER_HEARTBEAT": "22"}
    config, _ = load(["--config", str(path), "--default-user", "flag-user"], environ)
    assert config.default_user == "flag-user"      # flag
    assert config.heartbeat == 22                  # AMQP_BROKER_* over the file
    assert config.default_pass == "rabbit-pass"    # RABBITMQ_DEFAULT_* over the file
    assert config.default_vhost == "fv"            # the file over the defaults
    assert (config.channel_max, config.frame_max) == (12, 8192)
    assert config.port == 5672                     # the default
    config, _ = load(["--config", str(path)], {"AMQP_BROKER_DEFAULT_USER": "env-user",
                                               "RABBITMQ_DEFAULT_USER": "rabbit-user"})
    assert config.default_user == "env-user"       # AMQP_BROKER_* over RABBITMQ_DEFAULT_*


def test_rabbitmq_image_variables_are_honoured() -> None:
    config, _ = load([], {"RABBITMQ_DEFAULT_USER": "app", "RABBITMQ_DEFAULT_PASS": "secret",
                          "RABBITMQ_DEFAULT_VHOST": "prod"})
    assert (config.default_user, config.default_pass, config.default_vhost) == \
        ("app", "secret", "prod")


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text("[limits]\nheartbeat = 7\n")
    second.write_text("[limits]\nheartbeat = 8\n")
    config, _ = load([], {"AMQP_BROKER_CONFIG": str(first)})
    assert (config.heartbeat, config.config_file) == (7, str(first))
    assert load(["--config", str(second)], {"AMQP_BROKER_CONFIG": str(first)})[0].heartbeat == 8


def test_empty_variables_count_as_unset() -> None:
    config, _ = load([], {"AMQP_BROKER_PORT": "", "AMQP_BROKER_DEFAULT_USER": "",
                          "RABBITMQ_DEFAULT_USER": "", "AMQP_BROKER_CONFIG": ""})
    assert (config.port, config.default_user, config.config_file) == (5672, "guest", None)


def test_remote_guest_switch_only_widens(tmp_path: Path) -> None:
    path = tmp_path / "rabbitmq.conf"
    path.write_text("loopback_users.guest = true\nloopback_users.ops = true\n")
    assert load(["--config", str(path)], {"AMQP_BROKER_ALLOW_REMOTE_GUEST": "0"})[0] \
        .loopback_users == ("guest", "ops")
    assert load(["--config", str(path), "--allow-remote-guest"], {})[0].loopback_users == ()


def test_new_flags() -> None:
    pem = str(REPO / "README.md")  # any readable file: the checks only need it readable
    config, _ = load(["--definitions", pem, "--tls-certfile", pem, "--tls-keyfile", pem,
                      "--tls-cacertfile", pem, "--management-port", "0", "--tls-port", "5674",
                      "--disk-free-limit", "1GB", "--memory-high-watermark", "512MiB"], {})
    assert config.load_definitions == pem
    assert (config.tls_port, config.tls_certfile, config.tls_keyfile, config.tls_cacertfile) \
        == (5674, pem, pem, pem)
    assert config.management_port == 0
    assert (config.disk_free_limit, config.memory_high_water) == (10 ** 9, 512 * 1024 ** 2)
    assert load(["--tls-certfile", pem, "--tls-keyfile", pem], {})[0].tls_port == 5671


@pytest.mark.parametrize("argv, environ, message", [
    ([], {"AMQP_BROKER_HEARTBEAT": "abc"}, "AMQP_BROKER_HEARTBEAT: not an integer: 'abc'"),
    (["--heartbeat", "x"], {}, "--heartbeat: not an integer: 'x'"),
    ([], {"AMQP_BROKER_PORT": "http"}, "AMQP_BROKER_PORT: not a port number: 'http'"),
    ([], {"AMQP_BROKER_ALLOW_REMOTE_GUEST": "perhaps"},
     "AMQP_BROKER_ALLOW_REMOTE_GUEST: not true or false: 'perhaps'"),
    ([], {"AMQP_BROKER_DISK_FREE_LIMIT": "lots"}, "AMQP_BROKER_DISK_FREE_LIMIT: not a size"),
    (["--tls-port", "5671"], {}, "--tls-port: a TLS listener needs a certificate and a key"),
    (["--metrics-port", "5672"], {}, "--metrics-port: port 5672 is also used by port"),
    (["--config", "/nonexistent/broker.toml"], {},
     "/nonexistent/broker.toml: cannot read the configuration file"),
])
def test_bad_settings_are_one_usage_error(argv: list[str], environ: dict[str, str],
                                          message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        config_from_args(argv, environ)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"amqp-broker: error: {message}") and err.count("\n") == 1, err


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_",
                                                                        "RABBITMQ_"))}
    return subprocess.run([sys.executable, "-m", "amqp_broker", *args], cwd=REPO,
                          env={**environ, **(env or {})}, capture_output=True, text=True,
                          timeout=30)


def test_help_works_whatever_the_environment_holds() -> None:
    out = run_cli("--help", env={"AMQP_BROKER_HEARTBEAT": "abc", "AMQP_BROKER_PORT": "x"})
    assert out.returncode == 0 and "--config" in out.stdout
    assert "Traceback" not in out.stderr


def test_bad_variable_exits_2_with_one_line() -> None:
    out = run_cli(env={"AMQP_BROKER_HEARTBEAT": "abc"})
    assert out.returncode == 2
    assert out.stderr == "amqp-broker: error: AMQP_BROKER_HEARTBEAT: not an integer: 'abc'\n"


def test_bad_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rabbitmq.conf"
    path.write_text("heartbeat = 10\nlisteners.tcp.default = 5672\nqueue_master_lokator = x\n")
    out = run_cli("--config", str(path))
    assert out.returncode == 2
    assert out.stderr == f"amqp-broker: error: {path}:3: queue_master_lokator: unknown setting\n"
    path = tmp_path / "broker.toml"
    path.write_text("[limits]\nheartbeat = 'abc'\n")
    out = run_cli(env={"AMQP_BROKER_CONFIG": str(path)})
    assert out.returncode == 2
    assert out.stderr == (f"amqp-broker: error: {path}:2: limits.heartbeat: not an integer: "
                          "'abc'\n")


def test_start_up_logs_banner_and_warnings(tmp_path: Path) -> None:
    path = tmp_path / "rabbitmq.conf"
    path.write_text("collect_statistics_interval = 5000\nloopback_users = none\n")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    # an unusable data directory stops the broker right after the start-up lines
    out = run_cli("--config", str(path), "--data-dir", str(not_a_dir), "--port", "0",
                  "--metrics-port", "0", "--management-port", "0", "--log-format", "json")
    assert out.returncode == 1, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    events = [line["event"] for line in lines]
    assert events[:3] == ["configuration setting ignored", "starting",
                          "the guest user can log in from any host"], events
    assert "collect_statistics_interval" in lines[0]["detail"]
    assert lines[1]["config_file"] == str(path) and lines[1]["amqp"] == "*:0"
    assert "Traceback" not in out.stderr


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append(("warning", event, kw))


def test_banner_lists_listeners() -> None:
    log = Recorder()
    banner(Config(host="127.0.0.1", port=5672, tls_port=5671, tls_host="::1",
                  management_port=0, metrics_port=15692, data_dir=None,
                  vhosts=("app",)), log)
    [(level, event, fields)] = log.events
    assert (level, event) == ("info", "starting")
    assert fields["amqp"] == "127.0.0.1:5672" and fields["amqps"] == "[::1]:5671"
    assert "management" not in fields and fields["prometheus"] == "127.0.0.1:15692"
    assert fields["vhosts"] == "/,app" and fields["data_dir"] == "none (in memory)"
    log = Recorder()
    banner(Config(loopback_users=()), log)
    assert log.events[-1][:2] == ("warning", "the guest user can log in from any host")
    log = Recorder()
    banner(Config(loopback_users=(), default_user="app"), log)
    assert [e[0] for e in log.events] == ["info"]


def test_export_definitions_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    module = types.ModuleType("amqp_broker.definitions")

    def export_main(argv: list[str]) -> int:
        calls.append(argv)
        return 0
    module.export_main = export_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "amqp_broker.definitions", module)
    assert main(["export-definitions", "out.json"]) == 0
    assert calls == [["out.json"]]


def test_export_definitions_missing_module(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    monkeypatch.setattr(importlib, "import_module", missing)
    assert main(["export-definitions", "out.json"]) == 2
    assert "export-definitions is not available" in capsys.readouterr().err


def test_broker_runs_with_a_rabbitmq_conf(tmp_path: Path) -> None:
    path = tmp_path / "rabbitmq.conf"
    path.write_text("default_user = app\ndefault_pass = s3cret\nheartbeat = 0\n"
                    "listeners.tcp.default = 1\nmanagement.tcp.port = 0\n")
    broker = BrokerProcess(None, tmp_path / "broker.log",  # its --port flag wins
                           extra_args=("--config", str(path))).start()
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.PlainCredentials("app", "s3cret"),
            blocked_connection_timeout=5, socket_timeout=5))
        assert conn.is_open
        conn.close()
    finally:
        broker.stop()


def test_bad_definitions_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "defs.json"
    path.write_text('{"queues": [{"name": "q", "vhost": "nope", "durable": true}]}')
    out = run_cli("--definitions", str(path), "--data-dir", "none", "--port", "0",
                  "--metrics-port", "0", "--management-port", "0")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "cannot start" in out.stdout + out.stderr and "nope" in out.stdout + out.stderr
    path.write_text("{not json")
    out = run_cli("--definitions", str(path), "--data-dir", "none", "--port", "0",
                  "--metrics-port", "0", "--management-port", "0")
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout
