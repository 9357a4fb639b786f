"""Broker configuration: one frozen dataclass, built once at start-up and passed in.

`amqp_broker.cli` builds it from flags, AMQP_BROKER_* variables, RabbitMQ's
RABBITMQ_DEFAULT_* variables and a configuration file (`amqp_broker.settings`),
then `check` validates it; tests construct it directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

# what the broker can announce in connection.start (RabbitMQ's names)
AUTH_MECHANISMS = ("PLAIN", "AMQPLAIN", "EXTERNAL", "ANONYMOUS")
# where a TLS client certificate's user name is taken from (RabbitMQ's ssl_cert_login_from)
CERT_LOGIN_FROM = ("distinguished_name", "common_name")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("console", "json")
FRAME_MIN_SIZE = 4096  # AMQP 0-9-1: frame_max may not be negotiated below this
DEFAULT_TLS_PORT = 5671


class ConfigError(Exception):
    """A setting that cannot be used; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = 5672
    data_dir: str | None = "data"  # None: in-memory store, nothing survives a restart
    log_level: str = "info"
    log_format: str = "console"  # console | json
    # the configuration file read at start-up, if any (for the banner and the logs)
    config_file: str | None = None
    # negotiation limits offered in connection.tune
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    # authentication
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    vhosts: tuple[str, ...] = field(default_factory=tuple)
    loopback_users: tuple[str, ...] = ("guest",)  # users allowed from loopback only
    # SASL mechanisms offered in connection.start, in this order
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "AMQPLAIN")
    # EXTERNAL (TLS client certificate) login: the user name is the certificate's subject
    # distinguished name or its common name (RabbitMQ's ssl_cert_login_from)
    ssl_cert_login_from: str = "distinguished_name"
    # a definitions JSON file (or a directory of them) imported at start-up
    load_definitions: str | None = None
    # AMQPS listener (RabbitMQ's listeners.ssl.default): None or 0 disables it; the CLI
    # sets 5671 when a certificate and key are configured without a port
    tls_port: int | None = None
    tls_host: str | None = None  # None: the same address as host
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_cacertfile: str | None = None
    tls_verify_peer: bool = False  # ask for a client certificate and verify it
    tls_fail_if_no_peer_cert: bool = False  # refuse a client that presents none
    # limits
    max_message_size: int = 128 * 1024 * 1024
    # per-connection output buffer above which deliveries to it pause (bytes)
    write_high_water: int = 1024 * 1024
    # per-connection output (queued and being sent) above which the connection is no
    # longer read until it drains: returns and basic.get replies to a client that does
    # not read stay bounded (bytes)
    max_connection_buffer: int = 4 * 1024 * 1024
    # bodies of persistent messages not yet fsync'd above which publishers wait for the
    # group commit before more of their input is read (bytes)
    max_unsynced_bytes: int = 64 * 1024 * 1024
    # bytes the broker holds (bodies, buffers; RSS as a backstop) above which
    # publishers are blocked (amqp_broker.alarms)
    memory_high_water: int = 1024 * 1024 * 1024
    # free bytes on the data directory's disk below which publishers are blocked
    disk_free_limit: int = 50 * 1000 * 1000
    # seconds a delivery may stay unacknowledged before its channel is closed (0: never)
    consumer_timeout: float = 1800.0
    # prometheus metrics endpoint port (0 disables) and address
    metrics_port: int = 15692
    metrics_host: str | None = None  # None: the same address as host
    # management HTTP API port (0 disables) and address
    management_port: int = 15672
    management_host: str | None = None  # None: the same address as host

    def address(self, listener: str) -> tuple[str, int | None]:
        """(host, port) of a listener: "amqp", "amqps", "management" or "prometheus".

        A host of "" means every IPv4 and IPv6 interface; a port of None or 0 means
        the listener is off (for "amqp", 0 means any free port)."""
        host, port = {
            "amqp": (self.host, self.port),
            "amqps": (self.tls_host, self.tls_port),
            "management": (self.management_host, self.management_port),
            "prometheus": (self.metrics_host, self.metrics_port),
        }[listener]
        return (self.host if host is None else host), port


FIELDS = frozenset(f.name for f in fields(Config))


def _name(name: str, origins: Mapping[str, str]) -> str:
    origin = origins.get(name)
    return f"{origin}" if origin else name


def check(config: Config, origins: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError for the first setting the broker cannot start with.

    `origins` maps a field name to where its value came from (a flag, a variable, a
    file and line), so the message points at what to fix.
    """
    where = origins or {}

    def fail(name: str, problem: str) -> ConfigError:
        return ConfigError(f"{_name(name, where)}: {problem}")

    for name in ("port", "metrics_port", "management_port", "tls_port"):
        port = getattr(config, name)
        if port is not None and not 0 <= port <= 65535:
            raise fail(name, f"port {port} is outside 0-65535")
    if not 0 <= config.heartbeat <= 65535:
        raise fail("heartbeat", f"{config.heartbeat} is outside 0-65535 seconds")
    if not 0 <= config.channel_max <= 65535:
        raise fail("channel_max", f"{config.channel_max} is outside 0-65535")
    if not FRAME_MIN_SIZE <= config.frame_max <= 0xFFFFFFFF:
        raise fail("frame_max", f"{config.frame_max} is outside {FRAME_MIN_SIZE}-4294967295")
    if not 0 < config.max_message_size <= 512 * 1024 * 1024:
        # RabbitMQ's ceiling for max_message_size
        raise fail("max_message_size", f"{config.max_message_size} is outside 1-536870912")
    for name in ("memory_high_water", "disk_free_limit"):
        if getattr(config, name) < 0:
            raise fail(name, "must not be negative")
    if config.consumer_timeout < 0:
        raise fail("consumer_timeout", "must not be negative")
    if config.log_level not in LOG_LEVELS:
        raise fail("log_level", f"{config.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if config.log_format not in LOG_FORMATS:
        raise fail("log_format",
                   f"{config.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if not config.default_user:
        raise fail("default_user", "must not be empty")
    if not config.auth_mechanisms:
        raise fail("auth_mechanisms", "at least one mechanism is needed")
    for mechanism in config.auth_mechanisms:
        if mechanism not in AUTH_MECHANISMS:
            raise fail("auth_mechanisms", f"unknown mechanism {mechanism!r} "
                                          f"(supported: {', '.join(AUTH_MECHANISMS)})")
    if config.ssl_cert_login_from not in CERT_LOGIN_FROM:
        raise fail("ssl_cert_login_from", f"{config.ssl_cert_login_from!r} is not one of "
                                          f"{', '.join(CERT_LOGIN_FROM)}")
    for name in ("tls_certfile", "tls_keyfile", "tls_cacertfile"):
        path = getattr(config, name)
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise fail(name, f"cannot read {path!r}")
    if config.load_definitions is not None and not os.access(config.load_definitions,
                                                              os.R_OK):
        raise fail("load_definitions", f"cannot read {config.load_definitions!r}")
    if config.tls_port and not (config.tls_certfile and config.tls_keyfile):
        raise fail("tls_port", "a TLS listener needs a certificate and a key "
                               "(tls_certfile and tls_keyfile)")
    if bool(config.tls_certfile) != bool(config.tls_keyfile):
        raise fail("tls_certfile" if config.tls_certfile else "tls_keyfile",
                   "a certificate and a key go together (tls_certfile and tls_keyfile)")
    if config.tls_fail_if_no_peer_cert and not config.tls_verify_peer:
        raise fail("tls_fail_if_no_peer_cert", "needs tls_verify_peer (verify_peer)")
    if config.tls_verify_peer and not config.tls_cacertfile:
        raise fail("tls_verify_peer", "verifying client certificates needs tls_cacertfile "
                                      "(the CA that signs them)")
    seen: dict[tuple[str, int], str] = {}
    for listener, name in (("amqp", "port"), ("amqps", "tls_port"),
                           ("prometheus", "metrics_port"), ("management", "management_port")):
        host, port = config.address(listener)
        if not port:  # off, or any free port
            continue
        if (host, port) in seen:
            raise fail(name, f"port {port} is also used by {_name(seen[host, port], where)}")
        seen[host, port] = name
