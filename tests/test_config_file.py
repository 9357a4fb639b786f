"""Configuration files and values: units, the TOML format, RabbitMQ's rabbitmq.conf, checks.

(amqp_broker.settings, amqp_broker.rabbitmq_conf and amqp_broker.config.check; the
layering of flags and variables over a file is in test_cli.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from amqp_broker.config import Config, ConfigError, check
from amqp_broker.settings import (
    TOML_SCHEMA,
    Layer,
    OfRam,
    build,
    memory_limit,
    read,
    size,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "amqp-broker.example.toml"


def write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def conf(tmp_path: Path, content: str) -> tuple[Config, list[str]]:
    """A rabbitmq.conf file read and built on the defaults alone."""
    return build([read(write(tmp_path, "rabbitmq.conf", content))])


def error(tmp_path: Path, name: str, content: str) -> str:
    with pytest.raises(ConfigError) as info:
        build([read(write(tmp_path, name, content))])
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- units


@pytest.mark.parametrize("text, expected", [
    ("1234", 1234), (1234, 1234), ("0", 0),
    ("500MB", 500 * 10 ** 6), ("500mb", 500 * 10 ** 6), ("2GB", 2 * 10 ** 9),
    ("2G", 2 * 10 ** 9), ("5k", 5000), ("5kB", 5000), ("1TB", 10 ** 12),
    ("1024MiB", 1024 ** 3), ("1024Mi", 1024 ** 3), ("10GiB", 10 * 1024 ** 3),
    ("10Gi", 10 * 1024 ** 3), ("4KiB", 4096), ("2TiB", 2 * 1024 ** 4), ("1P", 10 ** 15),
])
def test_information_units_as_rabbitmq(text: object, expected: int) -> None:
    assert size(text) == expected


@pytest.mark.parametrize("text", ["2 GB", "1.5GB", "-1", "2XB", "GB", "", "2GiBB", -5, True])
def test_bad_sizes_are_refused(text: object) -> None:
    with pytest.raises(ValueError):
        size(text)


def test_memory_limit_is_a_fraction_or_a_size() -> None:
    assert memory_limit("0.4") == OfRam(0.4)
    assert memory_limit(0.5) == OfRam(0.5)
    assert memory_limit("1") == OfRam(1.0)
    assert memory_limit("2GB") == 2 * 10 ** 9
    assert memory_limit("3000000000") == 3000000000
    with pytest.raises(ValueError):
        memory_limit("-0.1")


# ---------------------------------------------------------------- rabbitmq.conf

@pytest.fixture
def pem(tmp_path: Path) -> str:
    """A readable file to stand for certificates (the checks only need it readable)."""
    return write(tmp_path, "file.pem", "-----BEGIN CERTIFICATE-----\n")


@pytest.mark.parametrize("line, expected", [
    ("listeners.tcp.default = 5673", {"host": "", "port": 5673}),
    ("listeners.tcp.default = 127.0.0.1:5673", {"host": "127.0.0.1", "port": 5673}),
    ("listeners.tcp.local = ::1:5673", {"host": "::1", "port": 5673}),
    ("listeners.tcp.1 = [::1]:5673", {"host": "::1", "port": 5673}),
    ("default_user = bob", {"default_user": "bob"}),
    ("default_pass = s3cret", {"default_pass": "s3cret"}),
    ("default_vhost = app", {"default_vhost": "app"}),
    ("loopback_users = none", {"loopback_users": ()}),
    ("loopback_users.guest = false", {"loopback_users": ()}),
    ("loopback_users.bob = true", {"loopback_users": ("bob",)}),
    ("heartbeat = 30", {"heartbeat": 30}),
    ("frame_max = 8192", {"frame_max": 8192}),
    ("frame_max = 64KB", {"frame_max": 65536}),
    ("channel_max = 100", {"channel_max": 100}),
    ("max_channels_per_connection = 64", {"channel_max": 64}),
    ("max_message_size = 1048576", {"max_message_size": 1048576}),
    ("vm_memory_high_watermark.absolute = 2GB", {"memory_high_water": 2 * 10 ** 9}),
    ("vm_memory_high_watermark.absolute = 1024MiB", {"memory_high_water": 1024 ** 3}),
    ("vm_memory_high_watermark.absolute = 500000000", {"memory_high_water": 500000000}),
    ("disk_free_limit.absolute = 500MB", {"disk_free_limit": 500 * 10 ** 6}),
    ("disk_free_limit.absolute = 1GiB", {"disk_free_limit": 1024 ** 3}),
    ("consumer_timeout = 900000", {"consumer_timeout": 900.0}),
    ("consumer_timeout = 1500", {"consumer_timeout": 1.5}),
    ("management.tcp.port = 15673", {"management_port": 15673}),
    ("management.tcp.ip = 127.0.0.1", {"management_host": "127.0.0.1"}),
    ("prometheus.tcp.port = 15693", {"metrics_port": 15693}),
    ("prometheus.tcp.ip = 127.0.0.1", {"metrics_host": "127.0.0.1"}),
    ("log.console.level = debug", {"log_level": "debug"}),
    ("log.console.level = warning", {"log_level": "warning"}),
    ("log.console.level = notice", {"log_level": "info"}),
    ("log.console.level = critical", {"log_level": "error"}),
    ("auth_mechanisms.1 = AMQPLAIN", {"auth_mechanisms": ("AMQPLAIN",)}),
    ("ssl_cert_login_from = common_name", {"ssl_cert_login_from": "common_name"}),
    ("ssl_cert_login_from = distinguished_name",
     {"ssl_cert_login_from": "distinguished_name"}),
    ("listeners.ssl = none", {"tls_port": None}),
])
def test_each_rabbitmq_conf_key(tmp_path: Path, line: str, expected: dict[str, Any]) -> None:
    config, warnings = conf(tmp_path, f"# a comment\n\n{line}\n")
    assert warnings == []
    assert {name: getattr(config, name) for name in expected} == expected
    assert config.config_file == str(tmp_path / "rabbitmq.conf")


def test_tls_keys(tmp_path: Path, pem: str) -> None:
    config, _ = conf(tmp_path, f"""
listeners.ssl.default = 5674
ssl_options.cacertfile = {pem}
ssl_options.certfile   = {pem}
ssl_options.keyfile    = {pem}
ssl_options.verify     = verify_peer
ssl_options.fail_if_no_peer_cert = true
auth_mechanisms.1 = EXTERNAL
auth_mechanisms.2 = PLAIN
""")
    assert (config.tls_port, config.tls_certfile, config.tls_keyfile, config.tls_cacertfile) \
        == (5674, pem, pem, pem)
    assert config.tls_verify_peer and config.tls_fail_if_no_peer_cert
    assert config.auth_mechanisms == ("EXTERNAL", "PLAIN")
    assert config.address("amqps") == ("", 5674)


def test_tls_listener_defaults_to_5671_with_a_certificate(tmp_path: Path, pem: str) -> None:
    config, _ = conf(tmp_path, f"ssl_options.certfile = {pem}\nssl_options.keyfile = {pem}\n")
    assert config.tls_port == 5671
    config, _ = conf(tmp_path, f"ssl_options.certfile = {pem}\nssl_options.keyfile = {pem}\n"
                               "listeners.ssl = none\n")
    assert config.tls_port is None
    assert conf(tmp_path, "")[0].tls_port is None


def test_tls_listener_on_its_own_address(tmp_path: Path, pem: str) -> None:
    config, _ = conf(tmp_path, f"listeners.tcp.default = 127.0.0.1:5672\n"
                               f"listeners.ssl.default = ::1:5671\n"
                               f"ssl_options.certfile = {pem}\nssl_options.keyfile = {pem}\n")
    assert config.address("amqp") == ("127.0.0.1", 5672)
    assert config.address("amqps") == ("::1", 5671)


def test_auth_mechanisms_in_key_order(tmp_path: Path) -> None:
    config, _ = conf(tmp_path, "auth_mechanisms.2 = AMQPLAIN\nauth_mechanisms.1 = PLAIN\n")
    assert config.auth_mechanisms == ("PLAIN", "AMQPLAIN")


def test_loopback_users_lists_exactly_the_true_ones(tmp_path: Path) -> None:
    config, _ = conf(tmp_path, "loopback_users.guest = true\nloopback_users.bob = true\n"
                               "loopback_users.eve = false\n")
    assert config.loopback_users == ("guest", "bob")


def test_relative_limits_follow_the_memory_total(tmp_path: Path) -> None:
    config, warnings = conf(tmp_path, "total_memory_available_override_value = 4GB\n"
                                      "vm_memory_high_watermark.relative = 0.5\n"
                                      "disk_free_limit.relative = 1.5\n")
    assert config.memory_high_water == 2 * 10 ** 9
    assert config.disk_free_limit == 6 * 10 ** 9
    assert warnings == []


def test_absolute_wins_over_relative_with_a_warning(tmp_path: Path) -> None:
    config, warnings = conf(tmp_path, "vm_memory_high_watermark.relative = 0.5\n"
                                      "vm_memory_high_watermark.absolute = 1GB\n")
    assert config.memory_high_water == 10 ** 9
    assert len(warnings) == 1 and "vm_memory_high_watermark.absolute" in warnings[0]


@pytest.mark.parametrize("line", [
    "cluster_formation.peer_discovery_backend = classic_config",
    "cluster_formation.classic_config.nodes.1 = rabbit@host1",
    "log.file.level = debug", "log.file = false", "collect_statistics_interval = 10000",
    "queue_master_locator = min-masters", "management.ssl.port = 15671",
    "mqtt.listeners.tcp.default = 1883", "default_user_tags.administrator = true",
    "ssl_options.versions.1 = tlsv1.2", "prometheus.return_per_object_metrics = true",
])
def test_known_unsupported_rabbitmq_keys_are_warnings(tmp_path: Path, line: str) -> None:
    config, warnings = conf(tmp_path, f"heartbeat = 10\n{line}\n")
    key = line.split(" = ")[0]
    assert config.heartbeat == 10
    assert warnings == [f"{tmp_path / 'rabbitmq.conf'}:2: {key} is a RabbitMQ setting this "
                        "broker does not support; ignored"]


@pytest.mark.parametrize("line, problem", [
    ("heartbaet = 10", "heartbaet: unknown setting"),
    ("heartbeat = abc", "heartbeat: not an integer: 'abc'"),
    ("heartbeat = 70000", "heartbeat: 70000 is outside 0-65535"),
    ("frame_max = 1024", "frame_max: 1024 is outside 4096"),
    ("frame_max = 1 MB", "frame_max: not a size in bytes"),
    ("listeners.tcp.default = 99999", "listeners.tcp.default: port 99999 is outside 0-65535"),
    ("listeners.tcp.default = localhost:5672", "listeners.tcp.default: not a port or IP:port"),
    ("listeners.tcp = none", "listeners.tcp: none (no AMQP listener without TLS) is not "),
    ("ssl_options.verify = yes", "ssl_options.verify: not verify_peer or verify_none"),
    ("ssl_options.fail_if_no_peer_cert = maybe", "ssl_options.fail_if_no_peer_cert: not true"),
    ("ssl_options.certfile = /nonexistent/cert.pem", "ssl_options.certfile: cannot read"),
    ("auth_mechanisms.1 = KERBEROS", "auth_mechanisms.1: unknown or unsupported mechanism"),
    ("ssl_cert_login_from = subject_alternative_name", "ssl_cert_login_from: 'subject_alt"),
    ("loopback_users = all", "loopback_users: not 'none'"),
    ("loopback_users.guest = yes", "loopback_users.guest: not true or false"),
    ("vm_memory_high_watermark.absolute = 2XB", "vm_memory_high_watermark.absolute: not a"),
    ("vm_memory_high_watermark.relative = lots", "vm_memory_high_watermark.relative: not a"),
    ("disk_free_limit.absolute = 1.5GB", "disk_free_limit.absolute: not a size"),
    ("consumer_timeout = 0", "consumer_timeout: not a positive number of milliseconds"),
    ("consumer_timeout = 5s", "consumer_timeout: not an integer"),
    ("management.tcp.port = http", "management.tcp.port: not a port number"),
    ("prometheus.tcp.port = -1", "prometheus.tcp.port: port -1 is outside"),
    ("log.console.level = loud", "log.console.level: not a log level"),
    ("load_definitions = /nonexistent/defs.json", "load_definitions: cannot read"),
    ("default_pass = encrypted:abc", "default_pass: encrypted values are not supported"),
    ("definitions.import_backend = https", "definitions.import_backend: 'https' is not"),
    ("heartbeat", "expected 'key = value'"),
    ("heartbeat =", "heartbeat: no value"),
    ("= 10", "expected 'key = value'"),
])
def test_bad_rabbitmq_conf_lines_name_key_file_and_line(tmp_path: Path, line: str,
                                                        problem: str) -> None:
    message = error(tmp_path, "rabbitmq.conf", f"# first line\n{line}\n")
    assert message.startswith(f"{tmp_path / 'rabbitmq.conf'}:2: {problem}"), message


def test_two_tcp_listeners_are_refused(tmp_path: Path) -> None:
    message = error(tmp_path, "rabbitmq.conf", "listeners.tcp.1 = 127.0.0.1:5672\n"
                                               "listeners.tcp.2 = ::1:5672\n")
    assert "rabbitmq.conf:2: listeners.tcp.2: only one TCP listener" in message
    assert "rabbitmq.conf:1: listeners.tcp.1" in message


def test_an_unreadable_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.conf: cannot read the configuration"):
        read(str(tmp_path / "missing.conf"))
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="binary.toml: not UTF-8"):
        read(str(path))


# ---------------------------------------------------------------- TOML


def _leaves(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, entry in schema.items():
        if isinstance(entry, dict):
            keys |= _leaves(entry, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_the_example_file_documents_every_key_and_gives_the_defaults() -> None:
    content = EXAMPLE.read_text()
    # commented-out settings show keys that are off by default: all must be valid keys
    uncommented = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", content)
    layer = read(str(EXAMPLE))
    table, written = "", set()
    for line in uncommented.splitlines():
        if line.startswith("["):
            table = line.strip("[]") + "."
        elif re.match(r"[a-z_]+ = ", line):
            written.add(("" if not table else table) + line.split(" = ")[0])
    assert written == _leaves(TOML_SCHEMA)
    config, warnings = build([layer])
    defaults = Config()
    for name in ("port", "data_dir", "heartbeat", "frame_max", "channel_max", "default_user",
                 "default_pass", "default_vhost", "vhosts", "loopback_users",
                 "auth_mechanisms", "ssl_cert_login_from", "max_message_size",
                 "disk_free_limit", "consumer_timeout", "metrics_port", "management_port",
                 "log_level", "log_format", "tls_port", "tls_verify_peer"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert warnings == []


def test_toml_sections(tmp_path: Path, pem: str) -> None:
    path = write(tmp_path, "broker.toml", f"""
data_dir = "none"
definitions = "{pem}"
vhosts = ["app", "staging"]
[listeners.amqp]
host = "127.0.0.1"
port = 5680
[listeners.amqps]
port = 5681
[tls]
certfile = "{pem}"
keyfile = "{pem}"
cacertfile = "{pem}"
verify_peer = true
fail_if_no_peer_cert = true
[auth]
mechanisms = ["AMQPLAIN", "EXTERNAL"]
default_user = "bob"
default_pass = "pw"
default_vhost = "prod"
loopback_users = []
ssl_cert_login_from = "common_name"
[limits]
heartbeat = 5
frame_max = 8192
channel_max = 16
max_message_size = "1MiB"
memory_high_watermark = "2GB"
disk_free_limit = 0
consumer_timeout = 2.5
[management]
host = "127.0.0.1"
port = 15680
[prometheus]
port = 0
[log]
level = "debug"
format = "json"
""")
    config, _ = build([read(path)])
    assert config.data_dir is None and config.load_definitions == pem
    assert (config.default_vhost, config.vhosts) == ("prod", ("app", "staging"))
    assert config.address("amqp") == ("127.0.0.1", 5680)
    assert config.address("amqps") == ("127.0.0.1", 5681)
    assert config.address("management") == ("127.0.0.1", 15680)
    assert config.metrics_port == 0
    assert config.tls_verify_peer and config.tls_fail_if_no_peer_cert
    assert config.auth_mechanisms == ("AMQPLAIN", "EXTERNAL")
    assert (config.default_user, config.default_pass, config.loopback_users) == ("bob", "pw", ())
    assert config.ssl_cert_login_from == "common_name"
    assert (config.heartbeat, config.frame_max, config.channel_max) == (5, 8192, 16)
    assert config.max_message_size == 1024 * 1024
    assert (config.memory_high_water, config.disk_free_limit) == (2 * 10 ** 9, 0)
    assert config.consumer_timeout == 2.5
    assert (config.log_level, config.log_format) == ("debug", "json")


@pytest.mark.parametrize("content, problem", [
    ("[limits]\nheartbeat = \"abc\"\n", ":2: limits.heartbeat: not an integer: 'abc'"),
    ("[limits]\nheartbeet = 5\n", ":2: unknown setting 'limits.heartbeet'"),
    ("limits.heartbeet = 5\n", ":1: unknown setting 'limits.heartbeet'"),
    ("[limit]\nheartbeat = 5\n", ":1: unknown setting 'limit'"),
    ("verbose = true\n", ":1: unknown setting 'verbose'"),
    ("tls = 5\n", ":1: tls must be a table ([tls])"),
    ("[listeners.amqp]\nport = 70000\n", ":2: listeners.amqp.port: port 70000 is outside"),
    ("[auth]\nmechanisms = [\"NTLM\"]\n", ":2: auth.mechanisms: unknown or unsupported"),
    ("[auth]\nloopback_users = 5\n", ":2: auth.loopback_users: not a list of names"),
    ("[limits]\nframe_max = 100\n", ":2: limits.frame_max: 100 is outside 4096"),
    ("[limits]\nheartbeat = true\n", ":2: limits.heartbeat: not an integer: True"),
    ("[tls]\ncertfile = \"/nonexistent.pem\"\nkeyfile = \"/nonexistent.pem\"\n",
     ":2: tls.certfile: cannot read"),
])
def test_bad_toml_names_key_file_and_line(tmp_path: Path, content: str, problem: str) -> None:
    message = error(tmp_path, "broker.toml", content)
    assert message.startswith(str(tmp_path / "broker.toml") + problem), message


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    message = error(tmp_path, "broker.toml", "[limits\nheartbeat = 5\n")
    assert message.startswith(f"{tmp_path / 'broker.toml'}: not valid TOML: ")
    assert "line 1" in message


# ---------------------------------------------------------------- checks


@pytest.mark.parametrize("changes, problem", [
    ({"frame_max": 4095}, "frame_max: 4095 is outside"),
    ({"port": 70000}, "port: port 70000 is outside"),
    ({"channel_max": -1}, "channel_max: -1 is outside"),
    ({"tls_port": 5671}, "tls_port: a TLS listener needs a certificate and a key"),
    ({"tls_certfile": __file__}, "tls_certfile: a certificate and a key go together"),
    ({"tls_fail_if_no_peer_cert": True}, "tls_fail_if_no_peer_cert: needs tls_verify_peer"),
    ({"tls_verify_peer": True}, "tls_verify_peer: verifying client certificates needs"),
    ({"auth_mechanisms": ()}, "auth_mechanisms: at least one"),
    ({"default_user": ""}, "default_user: must not be empty"),
    ({"metrics_port": 5672}, "metrics_port: port 5672 is also used by port"),
    ({"log_level": "loud"}, "log_level: 'loud' is not one of"),
    ({"consumer_timeout": -1.0}, "consumer_timeout: must not be negative"),
])
def test_check_refuses(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        check(Config(**changes))
    assert str(info.value).startswith(problem)


def test_check_names_where_a_value_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^--metrics-port: port 5672 is also used by "
                                          r"AMQP_BROKER_PORT$"):
        check(Config(metrics_port=5672),
              {"metrics_port": "--metrics-port", "port": "AMQP_BROKER_PORT"})


def test_same_port_on_other_addresses_is_fine() -> None:
    check(Config(host="127.0.0.1", metrics_host="127.0.0.2", metrics_port=5672))
    check(Config(port=0, metrics_port=0, management_port=0))


def test_later_layers_win() -> None:
    low, high = Layer(), Layer()
    low.set("heartbeat", 5, "low")
    low.set("channel_max", 7, "low")
    high.set("heartbeat", 9, "high")
    config, _ = build([low, high])
    assert (config.heartbeat, config.channel_max) == (9, 7)
