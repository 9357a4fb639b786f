"""Configuration layers: value parsing, the TOML file, RabbitMQ's rabbitmq.conf, merging.

Each source (defaults, a file, environment variables, flags) becomes a `Layer`: values
keyed by `Config` field name, each with its origin ("rabbitmq.conf:12: heartbeat",
"AMQP_BROKER_PORT", "--port"). `build` stacks layers, lowest first, into one checked
`Config`, so an error names the setting exactly as the user wrote it.

The native file format is TOML (see amqp-broker.example.toml); a file whose name ends
in `.conf` is read as RabbitMQ's rabbitmq.conf (sysctl-style `key = value` lines, the
keys of deps/rabbit/priv/schema/rabbit.schema and its plugins) for the settings this
broker has; other RabbitMQ keys are reported as warnings, anything else stops start-up.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import (
    AUTH_MECHANISMS,
    CERT_LOGIN_FROM,
    DEFAULT_TLS_PORT,
    FIELDS,
    Config,
    ConfigError,
    check,
)

# ---------------------------------------------------------------- values


def integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"not an integer: {value!r}") from None


def port(value: object) -> int:
    try:
        number = integer(value)
    except ValueError:
        raise ValueError(f"not a port number: {value!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is outside 0-65535")
    return number


def number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    try:
        result = float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not result >= 0:  # also refuses nan
        raise ValueError(f"must not be negative: {value!r}")
    return result


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0", ""):
        return False
    raise ValueError(f"not true or false: {value!r}")


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value


def names(value: object) -> tuple[str, ...]:
    """A TOML list of strings, or a comma-separated string."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"not a list of names: {value!r}")


# RabbitMQ's information units (rabbit_resource_monitor_misc, 3.13 and later): k, M, G, T,
# P and kB, MB, ... are powers of 1000; Ki, KiB, Mi, MiB, ... powers of 1024
_UNITS = {"": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024}
for _power, _letter in enumerate("mgtp", start=2):
    _UNITS[_letter] = _UNITS[_letter + "b"] = 1000 ** _power
    _UNITS[_letter + "i"] = _UNITS[_letter + "ib"] = 1024 ** _power
_SIZE = re.compile(r"([0-9]+)([a-zA-Z]{0,3})")


def size(value: object) -> int:
    """Bytes: an integer, or RabbitMQ's units: "500MB", "1024MiB", "2GB", "10Gi"."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative: {value!r}")
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (bytes, or a number with a unit such as "
                         "500MB, 1024MiB, 2GB, 10GiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def bytesize(value: object) -> int:
    """cuttlefish's bytesize (frame_max): bytes, or KB, MB, GB as powers of 1024."""
    if isinstance(value, str):
        match = re.fullmatch(r"([0-9]+)([KMG]B)?", value.strip())
        if match is None:
            raise ValueError(f"not a size in bytes: {value!r} (bytes, or a number with "
                             "KB, MB or GB)")
        return int(match.group(1)) * {None: 1, "KB": 1024, "MB": 1024 ** 2,
                                      "GB": 1024 ** 3}[match.group(2)]
    return size(value)


@dataclass(frozen=True)
class OfRam:
    """A limit given as a fraction of RAM, turned into bytes once all layers are merged
    (rabbitmq.conf's total_memory_available_override_value may change the total)."""
    fraction: float


def memory_limit(value: object) -> int | OfRam:
    """--memory-high-watermark: a fraction of RAM (a number up to 1), or bytes ("2GB")."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a fraction of RAM or a size: {value!r}")
    try:
        amount = float(value)
    except ValueError:
        return size(value)
    if not amount >= 0:
        raise ValueError(f"must not be negative: {value!r}")
    return OfRam(amount) if amount <= 1 else int(amount)


def data_dir(value: object) -> str | None:
    path = text(value)
    return None if path.strip().lower() in ("", "none") else path


def log_level(value: object) -> str:
    """Our levels, and RabbitMQ's log.console.level names mapped onto them."""
    level = text(value).strip().lower()
    mapped = {"notice": "info", "warn": "warning", "critical": "error", "alert": "error",
              "emergency": "error", "none": "critical"}.get(level, level)
    if mapped not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError(f"not a log level: {value!r} (debug, info, warning, error)")
    return mapped


def log_format(value: object) -> str:
    fmt = text(value).strip().lower()
    if fmt not in ("console", "json"):
        raise ValueError(f"not a log format: {value!r} (console or json)")
    return fmt


def mechanisms(value: object) -> tuple[str, ...]:
    result = tuple(n.upper() for n in names(value))
    for name in result:
        if name not in AUTH_MECHANISMS:
            raise ValueError(f"unknown or unsupported mechanism {name!r} "
                             f"(supported: {', '.join(AUTH_MECHANISMS)})")
    if not result:
        raise ValueError("at least one mechanism is needed")
    return result


def cert_login_from(value: object) -> str:
    source = text(value).strip()
    if source not in CERT_LOGIN_FROM:
        raise ValueError(f"{value!r} is not supported (distinguished_name or common_name)")
    return source


def verify(value: object) -> bool:
    mode = text(value).strip()
    if mode not in ("verify_peer", "verify_none"):
        raise ValueError(f"not verify_peer or verify_none: {value!r}")
    return mode == "verify_peer"


def listener(value: object) -> tuple[str, int]:
    """A listener as rabbitmq.conf writes it: a port (every interface) or IP:port."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return "", port(value)
    raw = text(value).strip()
    host, _, port_text = raw.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not a port or IP:port: {value!r}") from None
    return host, port(port_text)


# ---------------------------------------------------------------- layers


@dataclass
class Layer:
    """Settings from one source: values by Config field, where each came from."""
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def set(self, name: str, value: object, origin: str) -> None:
        self.values[name] = value
        self.origins[name] = origin


# settings a layer may hold besides Config's fields
_EXTRA = {"tls_enabled", "total_memory"}


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def build(layers: Iterable[Layer]) -> tuple[Config, list[str]]:
    """Stack the layers (lowest precedence first) into one checked Config.

    Returns the Config and the warnings the layers collected; raises ConfigError."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    warnings: list[str] = []
    for layer in layers:
        unknown = set(layer.values) - FIELDS - _EXTRA
        assert not unknown, unknown
        values.update(layer.values)
        origins.update(layer.origins)
        warnings.extend(layer.warnings)
    ram = values.pop("total_memory", None)
    for name in ("memory_high_water", "disk_free_limit"):
        if isinstance(values.get(name), OfRam):
            values[name] = int((ram or total_memory()) * values[name].fraction)
    if values.pop("tls_enabled", True) is False:
        values["tls_port"] = None
    elif values.get("tls_port") is None and values.get("tls_certfile") \
            and values.get("tls_keyfile"):
        values["tls_port"] = DEFAULT_TLS_PORT
    vhosts = values.get("vhosts")
    if vhosts is not None:
        default = values.get("default_vhost", "/")
        values["vhosts"] = tuple(dict.fromkeys(v for v in vhosts if v != default))
    config = Config(**values)
    check(config, origins)
    return config, warnings


def read(path: str) -> Layer:
    """A configuration file: rabbitmq.conf format when its name ends in .conf, else TOML."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: "
                          f"{exc.strerror or exc}") from None
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if path.endswith(".conf"):
        from .rabbitmq_conf import read_rabbitmq_conf
        layer = read_rabbitmq_conf(content, path)
    else:
        layer = read_toml(content, path)
    layer.set("config_file", path, path)
    return layer


# ---------------------------------------------------------------- TOML

# [section] key -> (Config field, parser); see amqp-broker.example.toml
TOML_SCHEMA: dict[str, Any] = {
    "data_dir": ("data_dir", data_dir),
    "definitions": ("load_definitions", text),
    "vhosts": ("vhosts", names),
    "listeners": {
        "amqp": {"host": ("host", text), "port": ("port", port)},
        "amqps": {"host": ("tls_host", text), "port": ("tls_port", port),
                  "enabled": ("tls_enabled", boolean)},
    },
    "tls": {
        "certfile": ("tls_certfile", text),
        "keyfile": ("tls_keyfile", text),
        "cacertfile": ("tls_cacertfile", text),
        "verify_peer": ("tls_verify_peer", boolean),
        "fail_if_no_peer_cert": ("tls_fail_if_no_peer_cert", boolean),
    },
    "auth": {
        "mechanisms": ("auth_mechanisms", mechanisms),
        "default_user": ("default_user", text),
        "default_pass": ("default_pass", text),
        "default_vhost": ("default_vhost", text),
        "loopback_users": ("loopback_users", names),
        "ssl_cert_login_from": ("ssl_cert_login_from", cert_login_from),
    },
    "limits": {
        "heartbeat": ("heartbeat", integer),
        "frame_max": ("frame_max", size),
        "channel_max": ("channel_max", integer),
        "max_message_size": ("max_message_size", size),
        "memory_high_watermark": ("memory_high_water", memory_limit),
        "disk_free_limit": ("disk_free_limit", size),
        "consumer_timeout": ("consumer_timeout", number),
    },
    "management": {"host": ("management_host", text), "port": ("management_port", port)},
    "prometheus": {"host": ("metrics_host", text), "port": ("metrics_port", port)},
    "log": {"level": ("log_level", log_level), "format": ("log_format", log_format)},
}


def _toml_line(content: str, keys: tuple[str, ...]) -> int | None:
    """The line a key is set on, for error messages (plain `[table]` / `key =` forms)."""
    table: tuple[str, ...] = ()
    for lineno, line in enumerate(content.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([A-Za-z0-9_.\s-]+?)\s*\]", stripped)
        if header:
            table = tuple(p.strip() for p in header.group(1).split("."))
            if table == keys:
                return lineno
            continue
        match = re.match(r"([A-Za-z0-9_.\s-]+?)\s*=", stripped)
        if match:
            key = tuple(p.strip() for p in match.group(1).split("."))
            if table + key == keys:
                return lineno
    return None


def read_toml(content: str, path: str) -> Layer:
    try:
        document = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    layer = Layer()

    def walk(table: dict[str, Any], schema: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in table.items():
            keys = prefix + (key,)
            line = _toml_line(content, keys)
            where = f"{path}:{line}" if line else path
            dotted = ".".join(keys)
            entry = schema.get(key)
            if entry is None:
                raise ConfigError(f"{where}: unknown setting {dotted!r}")
            if isinstance(entry, dict):
                if not isinstance(value, dict):
                    raise ConfigError(f"{where}: {dotted} must be a table ([{dotted}])")
                walk(value, entry, keys)
                continue
            name, parse = entry
            try:
                layer.set(name, parse(value), f"{where}: {dotted}")
            except ValueError as exc:
                raise ConfigError(f"{where}: {dotted}: {exc}") from None

    walk(document, TOML_SCHEMA, ())
    return layer
