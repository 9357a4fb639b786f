"""Command line: `amqp-broker` and `python -m amqp_broker`.

Settings come from four layers, the first that sets a value wins:
flags > AMQP_BROKER_* variables > RABBITMQ_DEFAULT_USER/_PASS/_VHOST > the
configuration file (--config or AMQP_BROKER_CONFIG; TOML, or rabbitmq.conf when
its name ends in .conf) > defaults. Flags are parsed with no defaults, so a bad
variable or file value is one usage error naming it (exit status 2), never a
traceback, and `--help` works whatever the environment holds.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from .config import Config, ConfigError
from .settings import (
    Layer,
    OfRam,
    boolean,
    build,
    data_dir,
    log_format,
    log_level,
    memory_limit,
    names,
    number,
    port,
    read,
    size,
    text,
)
from .settings import integer as integer_

ENV = "AMQP_BROKER_"
PROG = "amqp-broker"

# RabbitMQ's Docker image variables, honoured so its compose files work unchanged
RABBITMQ_ENV = {"RABBITMQ_DEFAULT_USER": "default_user",
                "RABBITMQ_DEFAULT_PASS": "default_pass",
                "RABBITMQ_DEFAULT_VHOST": "default_vhost"}

# defaults of the command line where they differ from Config's (which tests use)
DEFAULTS: dict[str, object] = {
    "host": "",  # every IPv4 and IPv6 interface, as RabbitMQ
    "memory_high_water": OfRam(0.4),  # RabbitMQ's vm_memory_high_watermark.relative
}


def _one(name: str, parse: Callable[[object], Any]) -> Callable[[str], dict[str, Any]]:
    return lambda value: {name: parse(value)}


def _vhosts(value: str) -> dict[str, Any]:
    vhosts = names(value) or ("/",)
    return {"default_vhost": vhosts[0], "vhosts": vhosts[1:]}


def _remote_guest(value: str) -> dict[str, Any]:
    return {"loopback_users": ()} if boolean(value) else {}


@dataclass(frozen=True)
class Option:
    flag: str
    env: str  # the variable is AMQP_BROKER_<env>
    apply: Callable[[str], dict[str, Any]]  # value -> Config fields; ValueError if bad
    help: str
    metavar: str | None = None
    switch: bool = False  # a flag without a value (store_true)


OPTIONS = (
    Option("--host", "HOST", _one("host", text),
           "address to listen on (default: every IPv4 and IPv6 interface, as RabbitMQ)"),
    Option("--port", "PORT", _one("port", port), "AMQP port (default: 5672)"),
    Option("--data-dir", "DATA_DIR", _one("data_dir", data_dir),
           "directory for durable messages and definitions (default: ./data); 'none' "
           "keeps everything in memory"),
    Option("--log-level", "LOG_LEVEL", _one("log_level", log_level),
           "debug, info, warning or error (default: info)"),
    Option("--log-format", "LOG_FORMAT", _one("log_format", log_format),
           "console or json (default: console)"),
    Option("--default-user", "DEFAULT_USER", _one("default_user", text),
           "user name (default: guest; also RABBITMQ_DEFAULT_USER)"),
    Option("--default-pass", "DEFAULT_PASS", _one("default_pass", text),
           "password (default: guest; also RABBITMQ_DEFAULT_PASS)"),
    Option("--vhosts", "VHOSTS", _vhosts,
           "comma-separated virtual hosts to serve, the first is the default one "
           "(default: /; RABBITMQ_DEFAULT_VHOST sets the default one)"),
    Option("--allow-remote-guest", "ALLOW_REMOTE_GUEST", _remote_guest,
           "let the guest user log in from other hosts; by default, as in RabbitMQ, guest "
           "may only connect via localhost (variable: 1 or true)", switch=True),
    Option("--heartbeat", "HEARTBEAT", _one("heartbeat", integer_),
           "heartbeat interval offered to clients, seconds; 0 disables (default: 60)"),
    Option("--memory-high-watermark", "MEMORY_HIGH_WATERMARK",
           _one("memory_high_water", memory_limit),
           "block publishers above this much memory held: a fraction of RAM (up to 1) "
           "or a size such as 2GB or 1024MiB (default: 0.4)"),
    Option("--disk-free-limit", "DISK_FREE_LIMIT", _one("disk_free_limit", size),
           "block publishers while the data directory's disk has less free space than "
           "this, bytes or a size such as 50MB; 0 disables (default: 50000000, as RabbitMQ)"),
    Option("--consumer-timeout", "CONSUMER_TIMEOUT", _one("consumer_timeout", number),
           "seconds a delivery may stay unacknowledged before its channel is closed with "
           "406, as RabbitMQ's consumer_timeout; 0 disables (default: 1800)"),
    Option("--metrics-port", "METRICS_PORT", _one("metrics_port", port),
           "Prometheus metrics on http://HOST:PORT/metrics; 0 disables (default: 15692, "
           "as RabbitMQ's plugin)"),
    Option("--management-port", "MANAGEMENT_PORT", _one("management_port", port),
           "management HTTP API port; 0 disables (default: 15672)"),
    Option("--definitions", "DEFINITIONS", _one("load_definitions", text),
           "definitions JSON file (or directory) to import at start-up, as RabbitMQ's "
           "load_definitions", metavar="FILE"),
    Option("--tls-port", "TLS_PORT", _one("tls_port", port),
           "AMQPS port (default: 5671 once a certificate and key are set)"),
    Option("--tls-certfile", "TLS_CERTFILE", _one("tls_certfile", text),
           "server certificate (PEM) for AMQPS", metavar="FILE"),
    Option("--tls-keyfile", "TLS_KEYFILE", _one("tls_keyfile", text),
           "server private key (PEM) for AMQPS", metavar="FILE"),
    Option("--tls-cacertfile", "TLS_CACERTFILE", _one("tls_cacertfile", text),
           "CA certificates (PEM) to verify client certificates with", metavar="FILE"),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="An AMQP 0-9-1 message broker that RabbitMQ clients use unmodified.",
        epilog="Each option may also be set by the environment variable in brackets, or in "
               "the configuration file. A flag wins over a variable, a variable over "
               "RABBITMQ_DEFAULT_USER/_PASS/_VHOST, those over the file. Subcommands: "
               f"{PROG} export-definitions FILE; {PROG} ctl VERB (see {PROG} ctl --help).")
    p.add_argument("--config", metavar="FILE",
                   help=f"configuration file: TOML (see amqp-broker.example.toml), or "
                        f"RabbitMQ's rabbitmq.conf format when its name ends in .conf "
                        f"[{ENV}CONFIG]")
    for option in OPTIONS:
        env = f"[{ENV}{option.env}]"
        if option.switch:
            p.add_argument(option.flag, action="store_true", default=None,
                           help=f"{option.help} {env}")
        else:
            p.add_argument(option.flag, metavar=option.metavar,
                           help=f"{option.help} {env}")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def load(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    """Flags, variables and the file into a checked Config, and the file's warnings.

    Raises ConfigError (one line naming the setting) or SystemExit (argparse: --help,
    --version, an unknown flag)."""
    args = parser().parse_args(argv)
    flags, variables, rabbitmq = Layer(), Layer(), Layer()
    for option in OPTIONS:
        given = getattr(args, _dest(option.flag))
        if given is not None:
            _apply(flags, option, "true" if given is True else given, option.flag)
        value = environ.get(ENV + option.env)
        if value:  # an empty variable counts as unset (compose files write `VAR=`)
            _apply(variables, option, value, ENV + option.env)
    for variable, name in RABBITMQ_ENV.items():
        if environ.get(variable):
            rabbitmq.set(name, environ[variable], variable)
    defaults = Layer(dict(DEFAULTS), {name: "default" for name in DEFAULTS})
    path = args.config or environ.get(ENV + "CONFIG") or None
    file = read(path) if path else Layer()
    return build([defaults, file, rabbitmq, variables, flags])


def _apply(layer: Layer, option: Option, value: str, origin: str) -> None:
    try:
        fields = option.apply(value)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    for name, parsed in fields.items():
        layer.set(name, parsed, origin)


def config_from_args(argv: Sequence[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> Config:
    """The Config for these arguments; a bad setting prints one usage error and exits 2."""
    try:
        config, _ = load(list(sys.argv[1:] if argv is None else argv),
                         os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return config


def _endpoint(host: str, port: int | None) -> str:
    if not host:
        host = "*"  # every IPv4 and IPv6 interface
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def banner(config: Config, log: Any) -> None:
    """One 'starting' line: version, listeners, data directory, file, vhosts; and a
    warning when guest may log in from other hosts."""
    listeners = {}
    for name in ("amqp", "amqps", "management", "prometheus"):
        host, port_ = config.address(name)
        if name == "amqp" or port_:
            listeners[name] = _endpoint(host, port_)
    log.info("starting", version=__version__, **listeners,
             data_dir=(os.path.abspath(config.data_dir) if config.data_dir
                       else "none (in memory)"),
             config_file=config.config_file or "none",
             vhosts=",".join((config.default_vhost, *config.vhosts)))
    if config.default_user == "guest" and "guest" not in config.loopback_users:
        log.warning("the guest user can log in from any host",
                    hint="set a user and password (--default-user/--default-pass) or "
                         "keep guest in loopback_users")


def export_definitions(argv: Sequence[str]) -> int:
    """`amqp-broker export-definitions FILE ...`.

    HOOK: the subcommand lives in amqp_broker.definitions as export_main(argv) -> int,
    called with the arguments after the subcommand name."""
    try:
        module = importlib.import_module("amqp_broker.definitions")
    except ModuleNotFoundError as exc:
        if exc.name != "amqp_broker.definitions":
            raise
        print(f"{PROG}: error: export-definitions is not available in this version "
              "(amqp_broker.definitions is missing)", file=sys.stderr)
        return 2
    return int(module.export_main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "export-definitions":
        return export_definitions(arguments[1:])
    if arguments and arguments[0] == "ctl":  # the management API client: amqp_broker.ctl
        from . import ctl
        return ctl.main(arguments[1:])
    try:
        config, warnings = load(arguments, os.environ)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    import structlog

    from . import logs, server
    from .definitions import DefinitionsError
    from .storage import StoreError
    logs.configure(config.log_level, config.log_format)
    log = structlog.get_logger("amqp_broker")
    for warning in warnings:
        log.warning("configuration setting ignored", detail=warning)
    banner(config, log)
    try:
        if config.data_dir:
            os.makedirs(config.data_dir, exist_ok=True)
        server.run(config)
    except (OSError, StoreError, DefinitionsError) as exc:
        # a busy port, an unusable or locked data directory, a bad definitions file:
        # one clear line, exit 1
        log.error("cannot start", error=str(exc), port=config.port, data_dir=config.data_dir)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
