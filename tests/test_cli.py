"""The command line: flags, AMQP_BROKER_* variables, validation, clear start-up errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amqp_broker.cli import config_from_args, main, parser

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
                   "AMQP_BROKER_HOST", "AMQP_BROKER_DATA_DIR", "--metrics-port"):
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
